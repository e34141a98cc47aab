"""Anti-entropy: replicas of a slot compare digests and heal what differs (RFC 0014).

A background loop, per round, visits every other node that holds a slot this
node holds (by the layout) and the failure detector does not hold dead. With
each peer it compares, level by level (`rimio.core.digest`): the digests of
every slot both hold (one question), then the group and slotlet digests of
the slots that differ, then the heads of the slotlets that differ. By head
order, the paths where the peer's head wins are *pulled* (its head and the
bytes of its parts, checked against the etag, applied here through the
replica protocol like any write) and the paths where ours wins are *pushed*
the same way, so both sides converge in one round. A replica applies a head
only if it beats its own: a repair never moves anything backwards.

The loop runs a round at start (a restarted node catches up at once), then
every `interval`, and at once when `trigger()` is called (the node calls it
when a peer comes back alive). Slots are compared `slot_concurrency` at a
time, and the bytes moved are paced by a token bucket, so healing shares the
node with its clients instead of starving them.

A round that compared this node with its peers puts it *in touch* (RFC 0015
§4, `rimio.core.absence`), then runs `after_round` (the tombstone purge). A
node out of touch for longer than the tombstone retention *re-syncs*: its
round pulls but pushes nothing, and forgets the heads it held before the
re-sync that no peer holds (their tombstones may have been purged while it
was away); the node serves no reads until that round is done.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import trio

from rimio.core.absence import Absence, ResyncFindings
from rimio.core.digest import EMPTY, FANOUT, HeadKey, differing, reconcile
from rimio.core.layout import Layout
from rimio.core.pacing import ByteRate
from rimio.core.repair_order import visit_order
from rimio.ops.coordination import Coordination, log
from rimio.ops.quorum_read import CoordinatedObject
from rimio.ops.read_repair import repair_replica
from rimio.storage.replica import LocalReplica


class LayoutView(Protocol):
    @property
    def current(self) -> Layout: ...


@dataclass(frozen=True, slots=True)
class AntiEntropySettings:
    # a round starts at least this often (seconds); 0 turns the loop off
    interval: float = 60.0
    # slots compared and repaired at once, with one peer (1: gentle on clients,
    # see RepairConfig)
    slot_concurrency: int = 1
    # repair rate: bytes per second on average, and the burst allowed
    bytes_per_second: float = 32 * 1024 * 1024
    burst_bytes: float = 8 * 1024 * 1024


@dataclass(slots=True)
class AntiEntropyStats:
    """For `GET /internal/v1/stats` (`anti_entropy`)."""

    rounds: int = 0
    # wall-clock time (seconds since 1970) the last round over every peer ended
    last_full_round: float | None = None
    last_round_seconds: float = 0.0
    slots_compared: int = 0
    slots_differing: int = 0
    heads_pulled: int = 0
    heads_pushed: int = 0
    # part files written by a repair (an inline object has none), each way
    parts_pulled: int = 0
    parts_pushed: int = 0
    # object bytes repaired, each way, and in all
    bytes_pulled: int = 0
    bytes_pushed: int = 0
    bytes_moved: int = 0
    failures: int = 0
    # slots found differing in the current round and not repaired yet
    backlog: int = 0
    last_error: str | None = None
    # RFC 0015 §4: wall-clock seconds of the last round in touch with the
    # peers, whether this node is re-syncing, and the heads a re-sync forgot
    last_contact: float | None = None
    resyncing: bool = False
    stale_forgotten: int = 0


@dataclass(frozen=True, slots=True)
class PeerSync:
    """How a comparison with one peer went."""

    compared: bool  # every slot shared with the peer was compared
    repaired: bool  # and every difference found was repaired


class AntiEntropy:
    def __init__(self, ctx: Coordination, layout: LayoutView, local: LocalReplica,
                 settings: AntiEntropySettings | None = None, *,
                 clock: Callable[[], float] = trio.current_time,
                 absence: Absence | None = None,
                 record_contact: Callable[[float], Awaitable[None]] | None = None,
                 after_round: Callable[[], Awaitable[object]] | None = None) -> None:
        self._ctx = ctx
        self._me = ctx.node_id
        self._layout = layout
        self._local = local
        self.settings = settings or AntiEntropySettings()
        self._clock = clock
        self._rate = ByteRate(self.settings.bytes_per_second, self.settings.burst_bytes)
        self._wake = trio.Event()
        self.stats = AntiEntropyStats()
        self.absence = absence or Absence(math.inf)
        self._record_contact = record_contact
        self._after_round = after_round
        self._resync_since = 0.0
        self.stats.last_contact = self.absence.last_contact

    def resyncing(self) -> bool:
        """Whether this node is re-syncing now (it must not serve reads)."""
        return self.absence.check(self._ctx.wall_clock())

    def progress(self) -> dict[str, Any]:
        return asdict(self.stats)

    def trigger(self) -> None:
        """Start a round now (a peer came back: it may have missed writes)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        if self.settings.interval <= 0:
            return
        while True:
            self._wake = trio.Event()
            try:
                await self.round()
            except Exception as exc:  # a round must never take the node down
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("anti-entropy round failed")
            with trio.move_on_after(self.settings.interval):
                await self._wake.wait()

    # -- a round ------------------------------------------------------------------

    def peers(self) -> list[str]:
        """Other nodes holding a slot this node holds, in a stable order."""
        layout = self._layout.current
        mine = layout.held_by(self._me)
        found: set[str] = set()
        for slot in mine:
            found.update(layout.holders(slot))
        found.discard(self._me)
        return sorted(found)

    async def round(self) -> bool:
        """One pass over every reachable peer; True when every peer was
        compared (and every difference repaired) without a failure."""
        started = self._clock()
        now = self._ctx.wall_clock()
        was_resyncing = self.stats.resyncing
        resync = self.stats.resyncing = self.absence.check(now)
        if resync and not was_resyncing:
            self._resync_since = now
            log.warning("out of touch with the peers since %s: re-syncing before serving",
                        self.absence.last_contact)
        findings = ResyncFindings() if resync else None
        peers = self.peers()
        complete = True
        # in touch: every reachable peer compared (a path that could not be
        # repaired does not count against it: its source may be damaged)
        failed = False
        compared = 0
        for peer in peers:
            if not self._ctx.liveness.is_reachable(peer):
                complete = False
                continue
            try:
                result = await self.sync_peer(peer, findings)
            except Exception as exc:
                result = PeerSync(compared=False, repaired=False)
                self._failed(f"with {peer}", exc)
            complete &= result.repaired
            failed |= not result.compared
            compared += result.compared
        self.stats.rounds += 1
        self.stats.last_round_seconds = self._clock() - started
        if complete:
            self.stats.last_full_round = self._ctx.wall_clock()
        if not failed and (compared or not peers):
            if findings is not None:
                await self._forget_stale(findings)
            await self._in_touch(now)
            if self._after_round is not None and not self.stats.resyncing:
                await self._after_round()
        return complete

    async def _in_touch(self, now: float) -> None:
        self.absence.in_touch(now)
        if self.stats.resyncing:
            log.warning("re-sync done: serving again")
        self.stats.resyncing = False
        self.stats.last_contact = now
        if self._record_contact is not None:
            await self._record_contact(now)

    async def _forget_stale(self, findings: ResyncFindings) -> None:
        """After a re-sync round: forget the heads held here since before the
        re-sync that no peer compared holds."""
        for slot, keys in sorted(findings.held_by_none().items()):
            if self._settled(slot, self._me):
                forgotten = await self._local.forget_stale(slot, keys, self._resync_since)
                self.stats.stale_forgotten += len(forgotten)
                if forgotten:
                    log.warning("re-sync forgot %d heads of slot %d that no peer holds",
                                len(forgotten), slot)

    def _settled(self, slot: int, *nodes: str) -> bool:
        """Whether `slot` sits where the layout wants it and `nodes` hold it.
        A moving slot belongs to the mover: its copies come and go (a holder
        drops it once the targets have it), and a repair must not put data
        back into a copy that is being dropped."""
        layout = self._layout.current
        holders = layout.holders(slot)
        return not layout.moving(slot) and all(n in holders for n in nodes)

    async def sync_peer(self, peer: str, findings: ResyncFindings | None = None) -> PeerSync:
        """Compare every settled slot both hold with `peer` and repair what
        differs. With `findings` (a re-sync), push nothing: record there, per
        slot, the heads held here that `peer` lacks."""
        layout = self._layout.current
        shared = sorted(s for s in layout.held_by(self._me) if self._settled(s, self._me, peer))
        if not shared:
            return PeerSync(compared=True, repaired=True)
        remote = self._ctx.replica_for(peer)
        tops = await self._local.digest_tops()
        theirs = await remote.digest_tops()
        todo = visit_order(self._me, (s for s in shared
                                      if tops.get(s, EMPTY) != theirs.get(s, EMPTY)))
        lacking = {slot: findings.peer(slot) for slot in shared} if findings is not None else {}
        self.stats.slots_compared += len(shared)
        self.stats.slots_differing += len(todo)
        self.stats.backlog = len(todo)
        failures = 0
        broken = 0  # slots whose comparison failed
        limit = trio.Semaphore(max(1, self.settings.slot_concurrency))

        async def one(slot: int) -> None:
            nonlocal failures, broken
            async with limit:
                try:
                    failures += await self.sync_slot(peer, slot, lacking.get(slot))
                except Exception as exc:
                    failures += 1
                    broken += 1
                    self._failed(f"slot {slot} with {peer}", exc)
                finally:
                    self.stats.backlog -= 1

        async with trio.open_nursery() as nursery:
            for slot in todo:
                nursery.start_soon(one, slot)
        return PeerSync(compared=broken == 0, repaired=failures == 0)

    async def sync_slot(self, peer: str, slot: int,
                        lacking: dict[str, HeadKey] | None = None) -> int:
        """Find the paths of `slot` whose heads differ between here and `peer`,
        and give each side the winner; the number of paths that could not be
        repaired. A path that fails (its source's copy is damaged or gone, a
        replica refused) is counted and the next one repaired: giving up the
        slot at the first failure would, every round again, leave every path
        repaired after it behind (found by tests/sim/test_divergence.py: a
        path whose only copy was corrupt kept the rest of its slot
        unreplicated). With `lacking` (a re-sync), take the peer's winners
        only, and add to `lacking` the heads held here of whose path the peer
        has no head."""
        remote = self._ctx.replica_for(peer)
        my_groups = await self._local.digest_groups(slot)
        groups = differing(my_groups, await remote.digest_groups(slot))
        if not groups:
            return 0
        mine = await self._local.digest_slotlets(slot, groups)
        theirs = await remote.digest_slotlets(slot, groups)
        slotlets = [i for g in groups for i in range(g * FANOUT, (g + 1) * FANOUT)
                    if mine.get(i, EMPTY) != theirs.get(i, EMPTY)]
        if not slotlets:
            return 0
        here = await self._local.slotlet_heads(slot, slotlets)
        there = await remote.slotlet_heads(slot, slotlets)
        plan = reconcile(here, there)
        moves = [(path, peer, self._me) for path in plan.pull]
        if lacking is not None:
            lacking.update((p, here[p]) for p in plan.push if p not in there)
        else:
            moves += [(path, self._me, peer) for path in plan.push]
        failures = 0
        for path, source, target in moves:
            if not self._settled(slot, self._me, peer):  # the layout changed meanwhile
                break
            try:
                await self._give(slot, path, source=source, target=target)
            except Exception as exc:
                failures += 1
                self._failed(f"{path} (slot {slot}) from {source} to {target}", exc)
                continue
            if target == self._me:
                self.stats.heads_pulled += 1
            else:
                self.stats.heads_pushed += 1
        return failures

    async def _give(self, slot: int, path: str, *, source: str, target: str) -> None:
        """Bring `target` up to `source`'s current head of `path`."""
        answer = await self._ctx.replica_for(source).get_head(slot, path)
        if answer.head is None:  # gone since the listing (dropped): nothing to give
            return
        head = answer.head
        sent = await repair_replica(self._ctx, target, CoordinatedObject(head, (source,), False))
        parts = (head.part_count if not head.deleted
                 and head.size_bytes > self._ctx.settings.inline_max_bytes else 0)
        if target == self._me:
            self.stats.parts_pulled += parts
            self.stats.bytes_pulled += sent
        else:
            self.stats.parts_pushed += parts
            self.stats.bytes_pushed += sent
        self.stats.bytes_moved += sent
        wait = self._rate.take(self._clock(), sent)
        if wait > 0 and math.isfinite(wait):
            await trio.sleep(wait)

    def _failed(self, what: str, exc: Exception) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.info("anti-entropy %s failed: %s", what, exc)
