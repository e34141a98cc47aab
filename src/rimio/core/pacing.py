"""Pacing of background work: a byte-rate budget and retry backoff.

Background loops (slot movement, RFC 0011 §4) must not starve clients, and
must not hammer a peer that keeps failing. Both rules are arithmetic on a
time the caller passes in: no clock is read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ByteRate:
    """A token bucket of `rate` bytes per second holding at most `burst` bytes.

    `take(now, n)` spends `n` bytes and answers how long to wait before the
    spending is within the rate (0: go on). The budget may go negative: a
    large object is sent whole, then paid for by waiting, so no transfer is
    cut and the average stays at `rate`."""

    rate: float
    burst: float
    _level: float = field(init=False)
    _at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("rate and burst must be positive")
        self._level = self.burst

    def take(self, now: float, nbytes: int) -> float:
        if self._at is not None and now > self._at:
            self._level = min(self.burst, self._level + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now
        self._level -= nbytes
        return 0.0 if self._level >= 0 else -self._level / self.rate


def retry_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after `failures` failures in a row: `base`, doubling, at most `cap`."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 62))
