"""How long a node has been out of touch with the other replicas of its
slots, and whether it must re-sync before it serves or repairs (RFC 0015 §4).

A node is *in touch* when an anti-entropy round compared it with at least
one peer without a failure (or it has no peer at all). A tombstone may be
purged once every replica of its slot holds it and it is older than the
retention; a node out of touch for longer than that may hold heads whose
tombstones the others have purged since, and pushing or serving them would
bring deleted objects back. Such a node is *re-syncing* until one round
brings it in touch again: it refuses to serve reads, pulls what it lacks,
pushes nothing and forgets the heads no peer holds.

Pure: the wall-clock time is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class Absence:
    """`retention`: seconds of absence after which a node re-syncs;
    `last_contact`: wall-clock seconds of the last round in touch (None:
    never recorded: a new node, or one older than this record)."""

    retention: float
    last_contact: float | None = None
    resyncing: bool = False

    def check(self, now: float) -> bool:
        """Whether the node is re-syncing at `now`. Once out of touch for
        longer than the retention it stays so until `in_touch` is called: a
        clock stepped back cannot end a re-sync that has not happened."""
        if (not self.resyncing and self.last_contact is not None
                and now - self.last_contact > self.retention):
            self.resyncing = True
        return self.resyncing

    def in_touch(self, now: float) -> None:
        """A round compared this node with its peers at `now`."""
        self.last_contact = now
        self.resyncing = False


def held_by_none(missing_per_peer: Iterable[set[str]]) -> set[str]:
    """The paths every peer compared lacks (the intersection; empty when no
    peer was compared)."""
    result: set[str] | None = None
    for missing in missing_per_peer:
        result = set(missing) if result is None else result & missing
    return result or set()
