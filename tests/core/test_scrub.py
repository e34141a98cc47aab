"""The scrub's pure decisions (rimio.core.scrub): counting checks, which ones
are fetched again, and when the next pass starts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rimio.core.scrub import PartCheck, ScrubStats, needs_refetch, next_pass_delay


def test_counting_checks() -> None:
    stats = ScrubStats()
    for check, size in [(PartCheck.GOOD, 10), (PartCheck.CORRUPT, 20), (PartCheck.MISSING, 30),
                        (PartCheck.GONE, 40), (PartCheck.GOOD, 1)]:
        stats.counted(check, size)
    assert (stats.parts_checked, stats.bytes_checked, stats.corrupt, stats.missing) == (
        4, 61, 1, 1)
    assert (stats.refetched, stats.refetch_failed, stats.passes, stats.last_pass) == (
        0, 0, 0, None)


def test_only_lost_parts_are_fetched_again() -> None:
    assert [c for c in PartCheck if needs_refetch(c)] == [PartCheck.CORRUPT, PartCheck.MISSING]


@given(started=st.floats(0, 1e9), took=st.floats(0, 1e6), interval=st.floats(0, 1e6))
def test_passes_start_at_most_every_interval(started: float, took: float,
                                             interval: float) -> None:
    now = started + took
    delay = next_pass_delay(started, now, interval)
    assert delay >= 0
    if took >= interval:
        assert delay == 0
    else:
        assert abs(now + delay - (started + interval)) <= 1e-6 * max(1.0, started + interval)
