"""The clock arithmetic of garbage collection (core/gc.py): hand-made times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rimio.core.gc import OrphanWatch, SteadyWall, Watermarks

steps = st.lists(st.tuples(st.floats(0, 100), st.integers(0, 10)), min_size=1, max_size=40)


@given(steps, st.floats(0, 300), st.floats(0, 500))
def test_watermarks_answer_the_newest_checkpoint_old_enough(
        points: list[tuple[float, int]], grace: float, later: float) -> None:
    marks = Watermarks()
    mono, mark, taken = 0.0, 0, []
    for dt, dm in points:
        mono += dt
        mark += dm
        marks.record(mono, mark)
        taken.append((mono, mark))
    now = mono + later
    old_enough = [m for t, m in taken if t <= now - grace]
    assert marks.settled(now, grace) == (max(old_enough) if old_enough else None)
    # asking again (the older checkpoints are dropped) answers the same
    assert marks.settled(now, grace) == (max(old_enough) if old_enough else None)


def test_a_watermark_never_goes_back() -> None:
    marks = Watermarks()
    marks.record(0.0, 10)
    marks.record(1.0, 7)
    assert marks.settled(1.0, 0.0) == 10


@given(st.lists(st.tuples(st.floats(0, 20), st.frozensets(st.integers(0, 5))), max_size=30),
       st.floats(0, 50))
def test_an_orphan_is_due_once_seen_orphaned_throughout_the_grace(
        scans: list[tuple[float, frozenset[int]]], grace: float) -> None:
    watch: OrphanWatch[str, int] = OrphanWatch()
    mono = 0.0
    since: dict[int, float] = {}  # the model: start of the current orphaned streak
    for dt, seen in scans:
        mono += dt
        since = {k: since.get(k, mono) for k in seen}
        due = watch.observe("slot", mono, grace, seen)
        assert sorted(due) == sorted(k for k, t in since.items() if mono - t >= grace)
        assert len(watch) == len(seen)


def test_orphan_watch_is_bounded_and_forgets() -> None:
    watch: OrphanWatch[str, int] = OrphanWatch(limit=3)
    assert watch.observe("a", 0.0, 0.0, [1, 2]) == [1, 2]
    assert watch.observe("b", 0.0, 0.0, [7, 8, 9]) == [7]  # only one more fits
    assert len(watch) == 3
    watch.forget("a", 1)
    assert len(watch) == 2
    assert watch.observe("a", 1.0, 5.0, []) == []
    assert len(watch) == 1


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(-1e6, 1e6)), min_size=1, max_size=30))
def test_steady_wall_never_outruns_the_monotonic_clock(
        readings: list[tuple[float, float]]) -> None:
    steady = SteadyWall()
    mono, wall = 0.0, 1000.0
    previous = steady.now(wall, mono)
    for dt, step in readings:
        mono += dt
        wall += dt + step
        now = steady.now(wall, mono)
        assert now <= wall
        assert now - previous <= dt + 1e-6
        previous = now


def test_steady_wall_follows_a_wall_clock_that_keeps_time() -> None:
    steady = SteadyWall()
    assert steady.now(1000.0, 0.0) == 1000.0
    assert steady.now(1010.0, 10.0) == 1010.0
    assert steady.now(90_000.0, 11.0) == 1011.0  # a step ahead is not followed
    assert steady.now(500.0, 12.0) == 500.0  # a step back is
