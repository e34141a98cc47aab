import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.errors import MalformedHead
from rimio.core.head import Head, beats, order_key, winner

heads = st.builds(
    Head,
    kind=st.sampled_from(["meta", "tombstone"]),
    path=st.sampled_from(["a", "b/c"]),
    slot_id=st.integers(0, 3),
    generation=st.integers(0, 4),
    write_id=st.text(max_size=3),
    size_bytes=st.integers(0, 10),
    etag=st.sampled_from(["", "ab", "cd"]),
    part_size=st.integers(0, 2),
    part_count=st.integers(0, 2),
    timestamp=st.floats(0, 10, allow_nan=False),
)


def _meta(gen: int, etag: str = "e", ts: float = 1.0) -> Head:
    return Head(kind="meta", path="p", slot_id=1, generation=gen, write_id="w", etag=etag,
                timestamp=ts)


def _tomb(gen: int) -> Head:
    return Head(kind="tombstone", path="p", slot_id=1, generation=gen, write_id="w")


def test_higher_generation_wins() -> None:
    assert beats(_meta(2), _tomb(1))
    assert not beats(_tomb(1), _meta(2))


def test_tombstone_beats_meta_at_equal_generation() -> None:
    assert beats(_tomb(3), _meta(3))
    assert not beats(_meta(3), _tomb(3))


def test_hash_breaks_ties_and_clock_does_not_decide() -> None:
    a, b = _meta(5, "x", ts=1000.0), _meta(5, "y", ts=1.0)
    expected = a if a.sha256 > b.sha256 else b
    assert winner([a, b]) == expected
    assert winner([b, a]) == expected


def test_anything_beats_nothing() -> None:
    assert beats(_meta(0), None)
    assert winner([]) is None


@given(heads, heads)
def test_strict_total_order_on_distinct_heads(a: Head, b: Head) -> None:
    if a == b:
        assert order_key(a) == order_key(b)
        assert not beats(a, b) and not beats(b, a)
    else:
        assert beats(a, b) != beats(b, a)


@given(heads, heads, heads)
def test_order_is_transitive(a: Head, b: Head, c: Head) -> None:
    if beats(a, b) and beats(b, c):
        assert beats(a, c)


@given(st.lists(heads, min_size=1, max_size=6), st.randoms())
def test_winner_is_independent_of_arrival_order(hs: list[Head], rnd: object) -> None:
    shuffled = list(hs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert winner(hs) == winner(shuffled)


@given(heads)
def test_dict_round_trip(h: Head) -> None:
    back = Head.from_dict(h.to_dict())
    if h.kind == "tombstone":
        assert (back.path, back.generation, back.write_id, back.timestamp) == (
            h.path, h.generation, h.write_id, h.timestamp)
    else:
        assert back == h
        assert back.sha256 == h.sha256


@pytest.mark.parametrize(
    "bad",
    [None, [], {}, {"kind": "meta"}, {"kind": "nope"},
     {"kind": "tombstone", "path": 1, "slot_id": 0, "generation": 0, "write_id": "",
      "deleted_at": 0},
     {"kind": "tombstone", "path": "p", "slot_id": 0, "generation": -1, "write_id": "",
      "deleted_at": 0},
     {"kind": "tombstone", "path": "p", "slot_id": 0, "generation": True, "write_id": "",
      "deleted_at": 0}],
)
def test_from_dict_rejects_garbage(bad: object) -> None:
    with pytest.raises(MalformedHead):
        Head.from_dict(bad)
