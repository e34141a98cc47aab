"""Slot digests and the diff (RFC 0014): the diff finds exactly the paths
whose heads differ, for any two head sets, and digests kept up to date one
write at a time equal digests computed from scratch."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.digest import (
    EMPTY,
    SLOTLETS,
    HeadKey,
    SlotDigest,
    differing_slotlets,
    reconcile,
    slotlet_of,
    token_of,
    xor,
)


def key(generation: int, deleted: bool, tag: int) -> HeadKey:
    return HeadKey(generation, deleted, hashlib.sha256(f"{generation}{deleted}{tag}".encode())
                   .hexdigest())


paths = st.text(alphabet="abcdefgh/", min_size=1, max_size=6)
keys = st.builds(key, st.integers(1, 4), st.booleans(), st.integers(0, 3))
head_sets = st.dictionaries(paths, keys, max_size=40)


def digest(heads: dict[str, HeadKey]) -> SlotDigest:
    return SlotDigest.of_heads((p, k.sha256) for p, k in heads.items())


def diff_paths(mine: dict[str, HeadKey], theirs: dict[str, HeadKey]) -> frozenset[str]:
    """The whole exchange, as two replicas run it: digests, then the heads of
    the slotlets that differ, then reconcile."""
    slotlets = set(differing_slotlets(digest(mine), digest(theirs)))
    return reconcile({p: k for p, k in mine.items() if slotlet_of(p) in slotlets},
                     {p: k for p, k in theirs.items() if slotlet_of(p) in slotlets}).paths


@given(head_sets, head_sets)
def test_the_diff_reports_exactly_the_paths_that_differ(
        mine: dict[str, HeadKey], theirs: dict[str, HeadKey]) -> None:
    expected = {p for p in set(mine) | set(theirs) if mine.get(p) != theirs.get(p)}
    assert diff_paths(mine, theirs) == expected


@given(head_sets, st.data())
def test_a_change_to_one_head_is_found(mine: dict[str, HeadKey], data: st.DataObject) -> None:
    path = data.draw(paths)
    theirs = {**mine, path: data.draw(keys)}
    assert diff_paths(mine, theirs) == ({path} if mine.get(path) != theirs[path] else set())


@given(head_sets, head_sets)
def test_reconcile_sends_each_path_to_the_side_that_lags(
        mine: dict[str, HeadKey], theirs: dict[str, HeadKey]) -> None:
    r = reconcile(mine, theirs)
    assert not set(r.pull) & set(r.push)
    for p in r.pull:
        assert theirs[p].beats(mine.get(p))
    for p in r.push:
        assert mine[p].beats(theirs.get(p))
    # after the exchange both sides hold the winner of every path
    merged_a = {**mine, **{p: theirs[p] for p in r.pull}}
    merged_b = {**theirs, **{p: mine[p] for p in r.push}}
    assert merged_a == merged_b


@given(st.lists(st.tuples(paths, keys), max_size=60))
def test_digest_kept_one_write_at_a_time_equals_the_digest_from_scratch(
        writes: list[tuple[str, HeadKey]]) -> None:
    """What storage does on each commit: XOR out the head replaced, XOR in
    the new one (only when it wins, as a replica applies)."""
    heads: dict[str, HeadKey] = {}
    slotlets = [EMPTY] * SLOTLETS
    for path, k in writes:
        old = heads.get(path)
        if not k.beats(old):
            continue
        s = slotlet_of(path)
        if old is not None:
            slotlets[s] = xor(slotlets[s], token_of(path, old.sha256))
        slotlets[s] = xor(slotlets[s], token_of(path, k.sha256))
        heads[path] = k
    assert SlotDigest(tuple(slotlets)) == digest(heads)
    nonzero = {i: d for i, d in enumerate(slotlets) if d != EMPTY}
    assert SlotDigest.from_sparse(nonzero) == digest(heads)


def test_an_empty_slot_has_an_all_zero_digest() -> None:
    assert SlotDigest.empty().top() == EMPTY == digest({}).top()
    assert digest({"a": key(1, False, 0)}).top() != EMPTY


def test_head_key_follows_the_head_order() -> None:
    # generation first; at equal generation a tombstone wins; then the larger sha
    assert key(2, False, 0) > key(1, True, 0)
    assert HeadKey(1, True, "0" * 64) > HeadKey(1, False, "f" * 64)
    assert HeadKey(1, False, "b" * 64).beats(HeadKey(1, False, "a" * 64))


def test_a_malformed_digest_is_refused() -> None:
    with pytest.raises(ValueError):
        SlotDigest((EMPTY,) * 3)
    with pytest.raises(ValueError):
        SlotDigest((b"x",) * SLOTLETS)
