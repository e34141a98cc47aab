"""Lifeguard dynamic suspicion: the timeout before a suspect is declared dead.

A suspicion starts at a maximum timeout and shrinks logarithmically towards a
minimum as *independent* confirmations (suspect messages from distinct
members) arrive, following memberlist's formula:

    min = suspicion_mult * max(1, log10(max(1, n))) * probe_interval
    max = suspicion_max_timeout_mult * min
    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

with ``k = suspicion_mult - 2`` expected confirmations (0 in clusters too small
to supply them, and 0 when dynamic suspicion is off: then the timeout is
simply ``min``, as in plain SWIM). The ``max(1, ...)`` floor is memberlist's:
it keeps the timeout positive in clusters of fewer than ten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def suspicion_bounds(suspicion_mult: int, max_timeout_mult: int, n: int,
                     probe_interval: float) -> tuple[float, float]:
    """(min, max) suspicion timeout for a cluster of `n` live members."""
    node_scale = max(1.0, math.log10(max(1, n)))
    low = suspicion_mult * node_scale * probe_interval
    return low, low * max_timeout_mult


def expected_confirmations(suspicion_mult: int, n: int, *, dynamic: bool) -> int:
    k = suspicion_mult - 2
    # Only n - 2 members can confirm (not the suspect, not the first accuser).
    if not dynamic or n - 2 < k:
        return 0
    return max(0, k)


@dataclass(slots=True)
class Suspicion:
    """One running suspicion of `node` at `incarnation`."""

    node: str
    incarnation: int
    start: float
    min_timeout: float
    max_timeout: float
    k: int
    confirmers: set[str] = field(default_factory=set)

    def timeout(self) -> float:
        if self.k < 1:
            return self.min_timeout
        # The first accuser is not a confirmation.
        c = max(0, len(self.confirmers) - 1)
        frac = math.log(c + 1) / math.log(self.k + 1)
        raw = self.max_timeout - frac * (self.max_timeout - self.min_timeout)
        return max(self.min_timeout, math.floor(raw * 1000.0) / 1000.0)

    def deadline(self) -> float:
        return self.start + self.timeout()

    def confirm(self, sender: str) -> bool:
        """Record `sender`'s accusation; True if it is a new, useful one."""
        if sender in self.confirmers or len(self.confirmers) > self.k:
            return False
        self.confirmers.add(sender)
        return True
