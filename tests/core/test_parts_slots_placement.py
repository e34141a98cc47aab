import hashlib

from hypothesis import given
from hypothesis import strategies as st

from rimio.core.parts import part_count, spans_for_range
from rimio.core.placement import replicas_for_slot
from rimio.core.slots import slot_for_path


@given(st.integers(1, 50), st.integers(0, 400), st.integers(0, 400))
def test_spans_cover_the_range_exactly(part_size: int, a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    spans = spans_for_range(start, end, part_size)
    covered = [s.index * part_size + s.offset + i for s in spans for i in range(s.length)]
    assert covered == list(range(start, end + 1))
    assert all(0 <= s.offset < part_size and s.offset + s.length <= part_size for s in spans)


def test_part_count() -> None:
    assert part_count(0, 8) == 0
    assert part_count(8, 8) == 1
    assert part_count(9, 8) == 2


def test_slot_formula_is_exact() -> None:
    path = "photos/2026/cat.jpg"
    digest = hashlib.sha256(path.encode()).digest()
    assert slot_for_path(path, 2048) == int.from_bytes(digest[:8], "big") % 2048
    assert slot_for_path(path, 1) == 0


@given(st.text(min_size=1, max_size=40), st.integers(1, 5000))
def test_slot_in_range(path: str, total: int) -> None:
    path = path.encode("utf-8", "replace").decode("utf-8")
    assert 0 <= slot_for_path(path.replace("\ud800", ""), total) < total


def test_placement_is_deterministic_and_distinct() -> None:
    nodes = [f"n{i}" for i in range(5)]
    for slot in range(100):
        r = replicas_for_slot(slot, nodes, 3)
        assert len(set(r)) == 3
        assert r == replicas_for_slot(slot, list(reversed(nodes)), 3)
    assert replicas_for_slot(0, ["a", "b"], 3) in (["a", "b"], ["b", "a"])


def test_adding_a_node_moves_about_one_nth_of_slots() -> None:
    before = [f"n{i}" for i in range(4)]
    after = [*before, "n4"]
    moved = sum(
        replicas_for_slot(s, before, 1) != replicas_for_slot(s, after, 1) for s in range(2048)
    )
    # expected 2048/5 ≈ 410; allow statistical slack
    assert 300 < moved < 520
