"""Quorum arithmetic for one slot under one layout (RFC 0011 §3).

A `SlotPlan` is what a coordinator needs to know about a slot: who is sent a
write (`write_set`), whose answers count for an acknowledgement (W of the
targets and, while the slot moves, W of the holders too), and whom a read
asks (`read_set`) and how many answers it needs (`read_quorum`). The layout
(`rimio.core.layout`) builds plans; the coordinator only reads them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SlotPlan:
    slot: int
    # rendezvous order, best first: the nodes the layout wants to hold the slot
    targets: tuple[str, ...]
    # the nodes that hold a complete copy now (confirmed in the layout)
    holders: tuple[str, ...]
    # W as configured (before capping at a set's size)
    write_quorum: int
    layout_version: int

    @property
    def moving(self) -> bool:
        return set(self.targets) != set(self.holders)

    @property
    def write_set(self) -> tuple[str, ...]:
        """Every node a write is sent to: targets first, then other holders."""
        return self.targets + tuple(n for n in self.holders if n not in self.targets)

    @property
    def read_set(self) -> tuple[str, ...]:
        """The nodes a read asks: the holders, targets' order first."""
        first = tuple(n for n in self.targets if n in self.holders)
        return first + tuple(n for n in self.holders if n not in first)

    def _needed(self, group: Collection[str]) -> int:
        return max(1, min(self.write_quorum, len(group)))

    @property
    def target_quorum(self) -> int:
        """W capped by the number of targets: the applies a write needs among them."""
        return self._needed(self.targets)

    @property
    def read_quorum(self) -> int:
        """Answers a read needs: |read_set| - W + 1, at least 1."""
        return max(1, len(self.read_set) - self._needed(self.read_set) + 1)

    def write_acknowledged(self, applied: Collection[str]) -> bool:
        """Whether heads applied on `applied` make a write acknowledged."""
        done = set(applied)
        if len(done & set(self.targets)) < self._needed(self.targets):
            return False
        # While the slot moves, W of the holders too: reads still go to them.
        return not self.moving or len(done & set(self.holders)) >= self._needed(self.holders)

    def write_possible(self, reachable: Collection[str]) -> bool:
        """Whether a write could still be acknowledged with only `reachable` answering."""
        return self.write_acknowledged(set(reachable) & set(self.write_set))
