"""The scrub's decisions, pure (rfcs/0017-scrub.md): what a check of one part
found, the counters a scrubber keeps, and when the next pass starts.

No I/O and no clock reads here: times are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PartCheck(Enum):
    """What re-hashing one stored part found."""

    GOOD = "good"  # its bytes hash to its sha256
    CORRUPT = "corrupt"  # they do not (or the file is unreadable): now quarantined
    MISSING = "missing"  # its file (or its inline bytes) is not there
    GONE = "gone"  # its head is no longer stored here (overwritten, collected): skip


@dataclass(slots=True)
class ScrubStats:
    """What `Scrubber.stats()` reports (`scrub` in `GET /internal/v1/stats`)."""

    parts_checked: int = 0
    bytes_checked: int = 0
    corrupt: int = 0
    missing: int = 0
    refetched: int = 0
    refetch_failed: int = 0
    # wall-clock seconds (since 1970) the last complete pass ended; None: none yet
    last_pass: float | None = None
    passes: int = 0

    def counted(self, check: PartCheck, size: int) -> None:
        """Count one part's check (`size`: the bytes read to check it)."""
        if check is PartCheck.GONE:
            return
        self.parts_checked += 1
        self.bytes_checked += size
        if check is PartCheck.CORRUPT:
            self.corrupt += 1
        elif check is PartCheck.MISSING:
            self.missing += 1


def needs_refetch(check: PartCheck) -> bool:
    """Whether a part found so is fetched again from another replica."""
    return check in (PartCheck.CORRUPT, PartCheck.MISSING)


def next_pass_delay(pass_started: float, now: float, interval: float) -> float:
    """Seconds to wait before the next pass: passes start at most every
    `interval` seconds (a pass that took longer is followed at once)."""
    return max(0.0, pass_started + interval - now)
