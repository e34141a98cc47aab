"""The piggyback dissemination queue (memberlist's TransmitLimitedQueue).

Every accepted update is queued and rides on outgoing pings, acks and gossip
frames until it has been sent ``retransmit_mult * ceil(log10(n + 1))`` times.
Packing takes the least-sent updates first (newest first among equals) and
fills a byte budget. One entry per node: a newer update about a node
supersedes the queued one. The queue is bounded; when full, the most-sent
(then oldest) entries are dropped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rimio.core.frames import MAX_UPDATES, Update, encoded_update_size


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    return retransmit_mult * max(1, math.ceil(math.log10(n + 1)))


@dataclass(slots=True)
class _Entry:
    update: Update
    size: int
    order: int  # insertion counter: larger is newer
    transmits: int = 0


class BroadcastQueue:
    """Bounded, transmit-limited queue of updates keyed by node id."""

    __slots__ = ("_entries", "_max_len", "_order", "drops")

    def __init__(self, max_len: int) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max_len = max_len
        self._order = 0
        self.drops = 0

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, update: Update) -> None:
        self._order += 1
        self._entries[update.node] = _Entry(update, encoded_update_size(update), self._order)
        if len(self._entries) > self._max_len:
            excess = len(self._entries) - self._max_len
            worst = sorted(self._entries.values(), key=lambda e: (-e.transmits, e.order))
            for e in worst[:excess]:
                del self._entries[e.update.node]
            self.drops += excess

    def pending(self) -> list[Update]:
        return [e.update for e in self._entries.values()]

    def take(self, budget: int, limit: int) -> list[Update]:
        """Updates fitting in `budget` bytes; each counts one transmission."""
        if not self._entries:
            return []
        out: list[Update] = []
        used = 0
        for e in sorted(self._entries.values(), key=lambda e: (e.transmits, -e.order)):
            if used + e.size > budget:
                continue  # a smaller one further on may still fit
            out.append(e.update)
            used += e.size
            e.transmits += 1
            if e.transmits >= limit:
                del self._entries[e.update.node]
            if len(out) >= MAX_UPDATES:
                break
        return out
