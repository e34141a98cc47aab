"""The scrubber: every stored part re-hashed in the background, at a bounded
byte rate, and a bad or missing one fetched again from another replica
(rfcs/0017-scrub.md).

A pass walks the slots this node has data of, the current heads of each by
path (a batch at a time), and every part of each (part files and inline
rows): `LocalStore.scrub_part` reads it whole and checks it against its
sha256, quarantining one that fails (rfcs/0013). A part found corrupt or
missing is then fetched again, alone, from another replica that holds the
same head (asked with `get_head`), through `restore_one_part`: the bytes are
checked by the sources as they leave and by this node against its own part
row before they are installed. With no such replica (R = 1, every copy
bad, the others unreachable) the part stays quarantined and is counted in
`refetch_failed`; it is never served (a read says `part_corrupt` or
`storage_corrupt`) and the next pass tries again.

Bytes read to check and bytes fetched are paced by one token bucket
(`core/pacing.ByteRate`) at `bytes_per_second`; a pass starts at most every
`interval` seconds. The pass position (slot, last path) is saved on the
first disk after every batch, so a restarted node resumes its pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import trio

from rimio.core.head import Head
from rimio.core.pacing import ByteRate
from rimio.core.scrub import PartCheck, ScrubStats, needs_refetch, next_pass_delay
from rimio.ops.coordination import Coordination, log
from rimio.ops.part_restore import restore_one_part
from rimio.storage.parts import PartRecord
from rimio.storage.store import LocalStore, StoredObject

DEFAULT_SCRUB_BYTES_PER_SECOND = 8 * 1024 * 1024
DEFAULT_SCRUB_INTERVAL = 24 * 3600.0
MIN_PASS_GAP = 1.0


@dataclass(frozen=True, slots=True)
class ScrubSettings:
    # bytes read (and fetched) per second on average; 0 turns the scrubber off
    bytes_per_second: float = DEFAULT_SCRUB_BYTES_PER_SECOND
    # a pass starts at most this often (seconds)
    interval: float = DEFAULT_SCRUB_INTERVAL
    # the bucket's depth: bytes that may go without waiting after an idle spell
    burst_bytes: float = 1024 * 1024
    # heads read from a slot's rows at once
    batch: int = 256
    # how long a replica asked for its head may take
    head_timeout: float = 5.0


class Scrubber:
    """Scrubs the parts of `store` (this node's, named `ctx.node_id`);
    `clock` and `sleep` pace (trio's), `wall_clock` stamps `last_pass`."""

    def __init__(self, ctx: Coordination, store: LocalStore,
                 settings: ScrubSettings | None = None, *,
                 clock: Callable[[], float] = trio.current_time,
                 sleep: Callable[[float], Awaitable[None]] = trio.sleep,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._store = store
        self.settings = settings or ScrubSettings()
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self.rate: ByteRate | None = None
        if self.settings.bytes_per_second > 0:
            self.rate = ByteRate(self.settings.bytes_per_second,
                                 max(1.0, self.settings.burst_bytes))
        self._stats = ScrubStats()
        # where the current pass is: (slot, last path done)
        self.position: tuple[int, str | None] | None = None

    def stats(self) -> dict[str, Any]:
        """parts_checked, bytes_checked, corrupt, missing, refetched,
        refetch_failed, last_pass (wall seconds), passes."""
        return asdict(self._stats)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        if self.rate is None:
            return
        resume = await self._store.scrub_position()
        while True:
            started = self._clock()
            try:
                await self.scrub_pass(resume)
                resume = None
            except Exception:  # a pass must never take the node down
                log.exception("scrub pass failed")
                resume = self.position  # the next pass goes on from there
            # (at least a second apart: an empty node must not spin on its passes)
            await self._sleep(max(MIN_PASS_GAP, next_pass_delay(started, self._clock(),
                                                               self.settings.interval)))

    async def scrub_pass(self, resume: tuple[int, str | None] | None = None) -> None:
        """Check every part of every current head on this node once; `resume`:
        start after that (slot, path), where an interrupted pass stopped.
        The position is saved after every batch (`LocalStore.save_scrub_position`)."""
        for slot in sorted(await self._store.slots_with_data()):
            after: str | None = None
            if resume is not None:
                if slot < resume[0]:
                    continue
                if slot == resume[0]:
                    after = resume[1]
            while True:
                self.position = (slot, after)
                batch = await self._store.scrub_batch(slot, after, self.settings.batch)
                for obj in batch:
                    if not obj.head.deleted:
                        for part in obj.parts:
                            await self.scrub_one(obj, part)
                if len(batch) < self.settings.batch:
                    break
                after = batch[-1].head.path
                await self._save((slot, after))
            await self._save((slot + 1, None))
        self.position = None
        await self._save(None)
        self._stats.passes += 1
        self._stats.last_pass = self._wall_clock()

    async def _save(self, position: tuple[int, str | None] | None) -> None:
        try:
            await self._store.save_scrub_position(position)
        except Exception as exc:  # best effort: a lost position costs a re-check
            log.info("scrub: could not save the pass position: %s", exc)

    async def scrub_one(self, obj: StoredObject, part: PartRecord) -> PartCheck:
        """Check one part (after waiting for its bytes' turn), and fetch it
        again when it is bad or missing."""
        await self._pace(part.size_bytes)
        check = await self._store.scrub_part(obj, part)
        self._stats.counted(check, part.size_bytes)
        if needs_refetch(check):
            log.warning("scrub: part %d of %s (slot %d) is %s here; fetching it again",
                        part.index, obj.head.path, obj.head.slot_id, check.value)
            await self.refetch(obj.head, part.index)
        return check

    async def refetch(self, head: Head, index: int) -> bool:
        """Fetch part `index` of `head` again from a replica holding the same
        head; counted as refetched or refetch_failed."""
        sources = await self._sources(head)
        if not sources:
            self._stats.refetch_failed += 1
            log.error("scrub: no other replica holds %s at generation %d to fetch its part "
                      "%d from; it stays quarantined", head.path, head.generation, index)
            return False
        try:
            sent = await restore_one_part(self._ctx, self._ctx.node_id, head, index, sources)
        except Exception as exc:
            self._stats.refetch_failed += 1
            log.error("scrub: fetching part %d of %s again failed: %s", index, head.path, exc)
            return False
        self._stats.refetched += 1
        await self._pace(sent)
        return True

    async def _sources(self, head: Head) -> tuple[str, ...]:
        """The other reachable replicas of the slot whose current head of the
        path is exactly `head`."""
        me = self._ctx.node_id
        plan = self._ctx.plan_for(head.slot_id)
        found: list[str] = []
        for node in self._ctx.reachable(plan.write_set):
            if node == me:
                continue
            with trio.move_on_after(self.settings.head_timeout):
                try:
                    answer = await self._ctx.replica_for(node).get_head(head.slot_id, head.path)
                except Exception as exc:
                    log.info("scrub: %s could not say its head of %s: %s", node, head.path, exc)
                    continue
                if answer.head is not None and answer.head.sha256 == head.sha256:
                    found.append(node)
        return tuple(found)

    async def _pace(self, nbytes: int) -> None:
        if self.rate is None:
            return
        wait = self.rate.take(self._clock(), nbytes)
        if wait > 0 and math.isfinite(wait):
            await self._sleep(wait)
