"""`TombstonePurger`: forgets tombstones every replica of their slot holds,
once they are older than the retention (RFC 0015).

A tombstone exists only to beat the older heads of its path wherever they
still are. Once every replica of the slot holds it (or something newer),
none of them can bring such a head back, and after the retention has also
passed (the time a replica may be away and still count as in touch, RFC 0015
§4), the tombstone has done its work. A pass, per slot this node holds that
is not moving:

1. the tombstones installed here longer than `retention` ago (a batch);
2. ask every other holder which of them it holds exactly (`heads_held`);
   every holder must answer, else the slot waits for a later pass;
3. the tombstones all of them hold: every other holder forgets them
   (`purge_tombstones`, which forgets only a tombstone still current), then
   this node does.

A pass interrupted between (3)'s steps leaves some replicas with the
tombstone and some without; anti-entropy copies it back to the latter
(a tombstone beats nothing), and a later pass purges it everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rimio.core.digest import HeadKey
from rimio.ops.antientropy import LayoutView
from rimio.ops.coordination import Coordination, log
from rimio.storage.replica import LocalReplica

# Tombstones purged per question (the wire's bound, rimio.core.digest_wire).
BATCH = 256


@dataclass(slots=True)
class PurgeStats:
    """For the node's stats (`tombstones`)."""

    passes: int = 0
    purged: int = 0
    # slots whose purge waited: a holder did not answer, or the slot moved
    deferred: int = 0
    last_pass: float | None = None  # wall-clock seconds


class TombstonePurger:
    def __init__(self, ctx: Coordination, layout: LayoutView, local: LocalReplica, *,
                 retention: float, wall_clock: Callable[[], float]) -> None:
        self._ctx = ctx
        self._me = ctx.node_id
        self._layout = layout
        self._local = local
        self.retention = retention
        self._wall_clock = wall_clock
        self.stats = PurgeStats()

    def progress(self) -> dict[str, Any]:
        return asdict(self.stats)

    async def purge_pass(self) -> int:
        """One pass over this node's settled slots; the tombstones it purged
        (from every replica of their slots)."""
        before = self._wall_clock() - self.retention
        layout = self._layout.current
        purged = 0
        for slot in sorted(layout.held_by(self._me)):
            if layout.moving(slot):
                continue
            others = [n for n in layout.holders(slot) if n != self._me]
            try:
                purged += await self._purge_slot(slot, others, before)
            except Exception as exc:
                self.stats.deferred += 1
                log.info("tombstone purge of slot %d deferred: %s", slot, exc)
        self.stats.passes += 1
        self.stats.purged += purged
        self.stats.last_pass = self._wall_clock()
        return purged

    async def _purge_slot(self, slot: int, others: list[str], before: float) -> int:
        purged = 0
        while True:
            old = await self._local.old_tombstones(slot, before, BATCH)
            if not old:
                return purged
            agreed = set(old)
            for node in others:
                if not self._ctx.liveness.is_reachable(node):
                    self.stats.deferred += 1
                    return purged
                agreed &= await self._ctx.replica_for(node).heads_held(slot, old)
            keys: dict[str, HeadKey] = {p: old[p] for p in sorted(agreed)}
            if keys:
                for node in others:
                    await self._ctx.replica_for(node).purge_tombstones(slot, keys)
                await self._local.purge_tombstones(slot, keys)
                purged += len(keys)
            if len(old) < BATCH or len(keys) < len(old):
                # a short batch was the last; one that not all hold would come back
                return purged
