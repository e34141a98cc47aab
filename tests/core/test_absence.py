"""Being in touch, and what a re-sync forgets (RFC 0015 §4, `rimio.core.absence`)."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from rimio.core.absence import Absence, ResyncFindings
from rimio.core.digest import HeadKey


def _key(i: int) -> HeadKey:
    return HeadKey(i, i % 2 == 0, hashlib.sha256(str(i).encode()).hexdigest())


def test_a_node_never_recorded_is_in_touch() -> None:
    assert not Absence(10.0).check(1e12)


def test_out_of_touch_past_the_retention_latches_until_in_touch() -> None:
    absence = Absence(10.0, last_contact=100.0)
    assert not absence.check(110.0)
    assert absence.check(110.5)
    # a clock stepped back does not end a re-sync that has not happened
    assert absence.check(105.0)
    absence.in_touch(120.0)
    assert not absence.check(125.0) and absence.last_contact == 120.0


paths = st.sets(st.sampled_from([f"p{i}" for i in range(12)]))


@given(st.dictionaries(st.integers(0, 3), st.lists(paths, max_size=4)))
def test_forgotten_are_the_heads_every_compared_peer_lacks(
        lacking: dict[int, list[set[str]]]) -> None:
    mine = {f"p{i}": _key(i) for i in range(12)}
    findings = ResyncFindings()
    for slot, per_peer in lacking.items():
        for missing in per_peer:
            findings.peer(slot).update((p, mine[p]) for p in missing)
    expected = {}
    for slot, per_peer in lacking.items():
        common = set.intersection(*per_peer) if per_peer else set()
        if common:
            expected[slot] = {p: mine[p] for p in common}
    assert findings.held_by_none() == expected
