"""Lifeguard local health awareness: how much this node distrusts itself.

The score rises when this node misses acks, gets too few nacks, must refute
a suspicion of itself, or sees its own event loop lag; it falls with every
successful probe. Probe interval and timeouts are multiplied by
``score + 1``, so a struggling node slows its accusations instead of
declaring healthy peers dead.
"""

from __future__ import annotations


class Awareness:
    """A bounded health score in ``[0, max_multiplier - 1]``."""

    __slots__ = ("_enabled", "_max", "score")

    def __init__(self, max_multiplier: int, *, enabled: bool = True) -> None:
        self._max = max_multiplier - 1
        self._enabled = enabled
        self.score = 0

    def apply(self, delta: int) -> None:
        if self._enabled:
            self.score = min(self._max, max(0, self.score + delta))

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)
