"""The digest exchange's msgpack frames (RFC 0014 §3): every question and
answer survives a round trip, and no bytes make the decoders raise anything
but their own error."""

from __future__ import annotations

import contextlib
import hashlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core import digest_wire as w
from rimio.core.digest import GROUPS, SLOTLETS, TOKEN_BYTES, HeadKey
from rimio.core.errors import BadRequest

digests = st.binary(min_size=TOKEN_BYTES, max_size=TOKEN_BYTES)
shas = st.integers(0, 1000).map(lambda i: hashlib.sha256(str(i).encode()).hexdigest())
head_keys = st.builds(HeadKey, st.integers(0, 1 << 40), st.booleans(), shas)


named_heads = st.dictionaries(st.text(min_size=1, max_size=20), head_keys, min_size=1,
                              max_size=w.MAX_NAMED)


@given(st.sampled_from(w.QUESTIONS), st.integers(0, 63),
       st.sets(st.integers(0, GROUPS - 1), min_size=1), named_heads)
def test_questions_round_trip(kind: str, slot: int, indexes: set[int],
                              named: dict[str, HeadKey]) -> None:
    q = w.DigestQuestion(kind, 0 if kind == "tops" else slot,
                         tuple(sorted(indexes)) if kind in ("slotlets", "heads") else (),
                         tuple(named.items()) if kind in ("held", "purge") else ())
    assert w.decode_question(w.encode_question(q), total_slots=64) == q


@given(st.sets(st.text(min_size=1, max_size=20), max_size=w.MAX_NAMED))
def test_path_answers_round_trip(paths: set[str]) -> None:
    assert w.decode_paths(w.encode_paths(paths)) == paths


@given(st.dictionaries(st.integers(0, 2047), digests),
       st.lists(digests, min_size=GROUPS, max_size=GROUPS),
       st.dictionaries(st.integers(0, SLOTLETS - 1), digests),
       st.dictionaries(st.text(min_size=1, max_size=20), head_keys))
def test_answers_round_trip(tops: dict[int, bytes], groups: list[bytes],
                            slotlets: dict[int, bytes], heads: dict[str, HeadKey]) -> None:
    assert w.decode_tops(w.encode_tops(tops), total_slots=2048) == tops
    assert w.decode_groups(w.encode_groups(groups)) == tuple(groups)
    assert w.decode_slotlets(w.encode_slotlets(slotlets)) == slotlets
    assert w.decode_heads(w.encode_heads(heads)) == heads


@given(st.binary(max_size=200))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    with contextlib.suppress(BadRequest):
        w.decode_question(data, total_slots=64)
    for decode in (lambda d: w.decode_tops(d, total_slots=64), w.decode_groups,
                   w.decode_slotlets, w.decode_heads, w.decode_paths):
        with contextlib.suppress(w.DigestWireError):
            decode(data)


@pytest.mark.parametrize("body", [
    {"v": 2, "q": "tops"},
    {"v": 1, "q": "everything"},
    {"v": 1, "q": "groups"},  # no slot
    {"v": 1, "q": "groups", "slot": 64},  # out of range
    {"v": 1, "q": "slotlets", "slot": 1, "groups": []},
    {"v": 1, "q": "slotlets", "slot": 1, "groups": [GROUPS]},
    {"v": 1, "q": "heads", "slot": 1, "slotlets": [3, 3]},
    {"v": 1, "q": "tops", "extra": 1},
    {"v": 1, "q": "held", "slot": 1},  # no heads
    {"v": 1, "q": "held", "slot": 1, "heads": []},
    {"v": 1, "q": "purge", "slot": 1, "heads": [["p", 1, True, "a" * 64]] * 2},  # twice
    {"v": 1, "q": "purge", "slot": 1, "heads": [["p", 1, "yes", "a" * 64]]},
    {"v": 1, "q": "held", "slot": 1, "heads": [["", 1, True, "a" * 64]]},
    {"v": 1, "q": "held", "slot": 1, "heads": [[f"p{i}", 1, True, "a" * 64]
                                               for i in range(w.MAX_NAMED + 1)]},
])
def test_malformed_questions_say_what_is_wrong(body: dict[str, object]) -> None:
    with pytest.raises(BadRequest, match="malformed digest question"):
        w.decode_question(msgpack.packb(body), total_slots=64)


@pytest.mark.parametrize("decode,body", [
    (w.decode_groups, {"groups": [b"x" * TOKEN_BYTES] * (GROUPS - 1)}),
    (w.decode_slotlets, {"slotlets": [[SLOTLETS, b"x" * TOKEN_BYTES]]}),
    (w.decode_heads, {"heads": [["p", -1, False, "a" * 64]]}),
    (w.decode_heads, {"heads": [["p", 1, 0, "a" * 64]]}),
    (w.decode_heads, {"heads": [["p", 1, False, "A" * 64]]}),
    (w.decode_heads, {"tops": []}),
    (w.decode_paths, {"paths": [""]}),
    (w.decode_paths, {"paths": [1]}),
])
def test_malformed_answers_are_refused(decode: object, body: dict[str, object]) -> None:
    with pytest.raises(w.DigestWireError):
        decode(msgpack.packb(body, use_bin_type=True))  # type: ignore[operator]
