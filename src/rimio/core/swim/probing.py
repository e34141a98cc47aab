"""Round-robin probe order over a shuffled member list (SWIM §4.3).

Each pass visits every member once in a random order, so a failed member is
probed within one pass (bounded detection time) yet probes stay unpredictable.
The list is reshuffled at the start of every pass; a member that joins during
a pass is inserted at a random position still ahead of us.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable


class ProbeOrder:
    __slots__ = ("_index", "_order", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._order: list[str] = []
        self._index = 0

    def add(self, node: str) -> None:
        pos = self._rng.randint(self._index, len(self._order))
        self._order.insert(pos, node)

    def next(self, candidates: Callable[[], Iterable[str]],
             eligible: Callable[[str], bool]) -> str | None:
        """The next eligible node; starts a new shuffled pass when one ends."""
        for _ in range(2):
            while self._index < len(self._order):
                node = self._order[self._index]
                self._index += 1
                if eligible(node):
                    return node
            self._order = sorted(candidates())  # sorted first: shuffle is then seed-stable
            self._rng.shuffle(self._order)
            self._index = 0
        return None
