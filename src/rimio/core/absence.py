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

from dataclasses import dataclass

from rimio.core.digest import HeadKey


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


class ResyncFindings:
    """What a re-sync round learns, slot by slot: for each peer compared,
    the heads held here (path -> head key) of which that peer has no head."""

    def __init__(self) -> None:
        self._lacking: dict[int, list[dict[str, HeadKey]]] = {}

    def peer(self, slot: int) -> dict[str, HeadKey]:
        """A new, empty record of what one more peer compared on `slot`
        lacks, for the comparison to fill in."""
        lacking: dict[str, HeadKey] = {}
        self._lacking.setdefault(slot, []).append(lacking)
        return lacking

    def held_by_none(self) -> dict[int, dict[str, HeadKey]]:
        """Per slot, the heads held here that every peer compared lacks (a
        slot no peer was compared on has none)."""
        out: dict[int, dict[str, HeadKey]] = {}
        for slot, per_peer in self._lacking.items():
            common = set(per_peer[0]).intersection(*per_peer[1:])
            if common:
                out[slot] = {p: per_peer[0][p] for p in common}
        return out
