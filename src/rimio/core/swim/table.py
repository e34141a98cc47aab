"""The member table: one record per node, merged as a join-semilattice.

Each record is ordered by ``(incarnation, rank(status), address)`` with
``alive < suspect < dead < left``, and an update replaces a record only if it
is greater. That is memberlist's precedence (a higher incarnation wins; at the
same incarnation suspect beats alive and dead beats suspect) made total, so
that two members that received the same set of updates in any order hold the
same table. The address is part of every update and is the last tie-breaker,
which keeps even conflicting claims order-independent.

Policy that is *not* order-independent lives in the machine (whether to refute
a claim about ourselves); this module stays a pure merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from rimio.core.frames import Alive, Dead, Leave, Status, Suspect, Update

RANK: Final = {Status.ALIVE: 0, Status.SUSPECT: 1, Status.DEAD: 2, Status.LEFT: 3}


def status_of(update: Update) -> Status:
    match update:
        case Alive():
            return Status.ALIVE
        case Suspect():
            return Status.SUSPECT
        case Dead():
            return Status.DEAD
        case Leave():
            return Status.LEFT


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """What this node believes about one member; `changed_at` is local time."""

    node: str
    address: str
    status: Status
    incarnation: int
    changed_at: float

    def key(self) -> tuple[int, int, str]:
        return (self.incarnation, RANK[self.status], self.address)

    @property
    def live(self) -> bool:
        """Alive or suspect: still probed and gossiped to."""
        return self.status.counts_as_alive


class MemberTable:
    """node id -> `MemberRecord`, with lattice merge."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, MemberRecord] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[MemberRecord]:
        return iter(self._rows.values())

    def get(self, node: str) -> MemberRecord | None:
        return self._rows.get(node)

    def merge(self, update: Update, now: float) -> MemberRecord | None:
        """Apply `update`; return the new record if it changed the table."""
        rec = MemberRecord(update.node, update.address, status_of(update), update.incarnation,
                           now)
        return self.put(rec)

    def put(self, rec: MemberRecord) -> MemberRecord | None:
        old = self._rows.get(rec.node)
        if old is not None and rec.key() <= old.key():
            return None
        self._rows[rec.node] = rec
        return rec

    def force(self, rec: MemberRecord) -> None:
        """Overwrite without comparison: only for this node's own record."""
        self._rows[rec.node] = rec

    def remove(self, node: str) -> None:
        self._rows.pop(node, None)
