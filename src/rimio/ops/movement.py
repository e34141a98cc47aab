"""`SlotMover`: the loop that makes this node's disk agree with the layout (RFC 0011 §4).

Each node runs one in its background nursery. A pass

1. **sweeps** (at start, then every `sweep_interval`): a slot this node
   neither holds nor is a target of has no business on its disk (a drop
   interrupted by a crash, a copy abandoned because the layout moved on, a
   late replica write after a drop): its rows and files go;
2. **copies in** every slot the layout makes this node a target of and that
   it does not hold: the slot's heads, listed page by page from a read
   quorum of its holders and merged by head order, are applied here when
   they beat this node's own (parts read from a holder of that head, with
   fallback, through read repair's `repair_replica`; tombstones too; the
   latest write's result is recorded with its head, so its write id still
   replays). Then the slot is confirmed in the layout. A few slots at once,
   at a bounded byte rate; the node serves clients meanwhile;
3. **drops** every slot it holds, is no target of, and every target holds:
   after exchanging layouts with those targets and checking again on the
   merged layout, it removes the slots from its holdings, then their data;
4. **promotes** its role: joining → active once it holds all its target
   slots, draining → removed once it holds none.

Passes run on every layout change and every `interval` seconds; a pass that
could not finish (a slot whose holders did not answer, a target that did
not take the exchange, an error) is retried with backoff. Errors are
logged, never raised into the node. A pass cancelled half-way leaves a slot
unconfirmed: the next start copies it again (heads it already holds are not
copied twice).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import trio

from rimio.core.head import Head, beats
from rimio.core.layout import Layout, Role
from rimio.core.listing import merge_listings
from rimio.core.pacing import ByteRate, retry_delay
from rimio.core.quorum import SlotPlan
from rimio.ops.coordination import Coordination
from rimio.ops.quorum_read import CoordinatedObject
from rimio.ops.read_repair import repair_replica
from rimio.ops.results import delete_result, put_result
from rimio.storage.replica import LocalReplica

log = logging.getLogger("rimio.movement")

# What a head costs against the byte rate beyond its bytes (a tombstone or
# an empty object is not free: a request and a row).
HEAD_COST_BYTES = 512


class LayoutSource(Protocol):
    """What the mover reads and changes of the layout (`LayoutService` is one)."""

    @property
    def current(self) -> Layout: ...
    async def update(self, change: Callable[[Layout], Layout]) -> Layout: ...
    async def exchange_with(self, node_id: str) -> bool: ...
    async def wait_changed(self, seen: Layout) -> Layout: ...


class SlotUnavailable(Exception):
    """Fewer than a read quorum of a slot's holders answered its listing."""


@dataclass(frozen=True, slots=True)
class MoverSettings:
    # slots copied at once
    slot_concurrency: int = 4
    # copy rate: bytes per second on average, and the burst allowed
    bytes_per_second: float = 32 * 1024 * 1024
    burst_bytes: float = 8 * 1024 * 1024
    # heads asked of each holder per listing page
    page_size: int = 256
    # a pass runs at least this often (seconds), even when the layout is still
    interval: float = 5.0
    # after a pass that could not finish: retry_base, doubling, at most retry_cap
    retry_base: float = 0.5
    retry_cap: float = 30.0
    # one listing page from one holder
    list_timeout: float = 10.0
    # copied slots are confirmed together at most this often: every layout
    # change makes writes coordinated under the one before answer
    # stale_layout and retry, so a move should not change it many times a second
    confirm_interval: float = 1.0
    # slots that must not be here are looked for this often (and at start)
    sweep_interval: float = 600.0


@dataclass(slots=True)
class MoverStats:
    """Progress, for `GET /internal/v1/stats` (`movement`)."""

    slots_copied: int = 0
    slots_dropped: int = 0
    slots_swept: int = 0
    heads_copied: int = 0
    bytes_copied: int = 0
    slot_failures: int = 0
    passes: int = 0
    # backlog after the last pass: slots to copy in, and held slots to give up
    to_copy: int = 0
    to_drop: int = 0
    last_error: str | None = None


class SlotMover:
    def __init__(self, ctx: Coordination, layout: LayoutSource, local: LocalReplica,
                 settings: MoverSettings | None = None, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self._ctx = ctx
        self._me = ctx.node_id
        self._layout = layout
        self._local = local
        self.settings = settings or MoverSettings()
        self._clock = clock
        self._rate = ByteRate(self.settings.bytes_per_second, self.settings.burst_bytes)
        self._confirming = trio.Lock()
        self._copied: set[int] = set()  # copied, not yet confirmed
        self._dropped: set[int] = set()  # dropped: swept once more (late writes)
        self._next_sweep = -math.inf
        self.stats = MoverStats()

    def progress(self) -> dict[str, Any]:
        return asdict(self.stats)

    # -- the loop -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Pass after pass until cancelled: on each layout change, at least
        every `interval` s, with backoff while passes cannot finish."""
        task_status.started()
        failures = 0
        while True:
            try:
                finished = await self.step()
            except Exception as exc:  # the node keeps serving; the next pass retries
                log.exception("slot movement pass failed")
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                finished = False
            failures = 0 if finished else failures + 1
            wait = (self.settings.interval if finished else
                    retry_delay(failures, base=self.settings.retry_base,
                                cap=self.settings.retry_cap))
            seen = self._layout.current
            with trio.move_on_after(wait):
                await self._layout.wait_changed(seen)

    async def step(self) -> bool:
        """One pass (sweep when due, copy in, drop, promote). True when nothing
        in it failed (work may still wait on other nodes)."""
        self.stats.passes += 1
        if self._clock() >= self._next_sweep:
            await self._sweep(sorted(await self._local.slots_with_data()))
            self._next_sweep = self._clock() + self.settings.sweep_interval
        elif self._dropped:
            await self._sweep(sorted(self._dropped))
        self._dropped.clear()
        copied = await self._copy_in()
        dropped = await self._drop()
        await self._promote()
        self._count_backlog()
        return copied and dropped

    def _count_backlog(self) -> None:
        layout = self._layout.current
        self.stats.to_copy = len(layout.slots_to_copy(self._me))
        self.stats.to_drop = sum(1 for s in layout.held_by(self._me)
                                 if self._me not in layout.targets(s))

    # -- sweep ----------------------------------------------------------------------

    def _unwanted(self, slot: int) -> bool:
        layout = self._layout.current
        return slot not in layout.held_by(self._me) and self._me not in layout.targets(slot)

    async def _sweep(self, slots: Iterable[int]) -> None:
        """Remove the data of slots this node neither holds nor is a target of."""
        for slot in slots:
            if not self._unwanted(slot):
                continue
            if not await self._local.list_heads(slot, "", None, 1):
                continue
            # Checked again after the await: the layout may have made us a target.
            if self._unwanted(slot):
                log.info("removing slot %d: this node neither holds it nor is its target",
                         slot)
                await self._local.drop_slot(slot)
                self.stats.slots_swept += 1

    # -- copy in --------------------------------------------------------------------

    async def _exchange(self, nodes: Iterable[str]) -> set[str]:
        """Exchange layouts with `nodes` at once; those that answered."""
        answered: set[str] = set()

        async def one(node: str) -> None:
            if await self._layout.exchange_with(node):
                answered.add(node)

        async with trio.open_nursery() as nursery:
            for node in sorted(set(nodes) - {self._me}):
                nursery.start_soon(one, node)
        return answered

    async def _copy_in(self) -> bool:
        layout = self._layout.current
        todo = sorted(layout.slots_to_copy(self._me))
        if not todo:
            return True
        # The holders we list from must know a layout that makes this node a
        # target: from then on they refuse (stale_layout) a write coordinated
        # under an older one, which would not reach this node and could be
        # missed by a listing already past its path.
        await self._exchange(n for s in todo for n in layout.holders(s))
        failed: list[int] = []
        queue = iter(todo)  # shared by the workers: each slot is taken once

        async def worker() -> None:
            for slot in queue:
                try:
                    await self._copy_slot(slot)
                except SlotUnavailable as exc:
                    failed.append(slot)
                    log.info("slot %d not copied yet: %s", slot, exc)
                except Exception as exc:
                    failed.append(slot)
                    self.stats.last_error = f"slot {slot}: {type(exc).__name__}: {exc}"
                    log.warning("copy of slot %d failed: %s", slot, exc)

        async with trio.open_nursery() as confirmer:
            confirmer.start_soon(self._confirm_every, self.settings.confirm_interval)
            async with trio.open_nursery() as workers:
                for _ in range(min(max(1, self.settings.slot_concurrency), len(todo))):
                    workers.start_soon(worker)
            confirmer.cancel_scope.cancel()
        await self._confirm()
        self.stats.slot_failures += len(failed)
        return not failed

    def _still_to_copy(self, slot: int) -> bool:
        layout = self._layout.current
        return (slot not in layout.held_by(self._me) and self._me in layout.targets(slot))

    async def _copy_slot(self, slot: int) -> None:
        if not self._still_to_copy(slot):
            return
        plan = self._layout.current.plan(slot)
        # No holder at all (every one removed by an operator): nothing exists
        # that the layout counts, and the slot is whole here as it is.
        after: str | None = None
        while plan.holders:
            after = await self._copy_page(plan, after)
            if after is None:
                break
            if not self._still_to_copy(slot):
                return  # the layout moved on; a sweep removes what was copied
        self._copied.add(slot)

    async def _copy_page(self, plan: SlotPlan, after: str | None) -> str | None:
        """Copy the winners of one page of the slot's listing; the next cursor."""
        fetch = self.settings.page_size
        sources = await self._list(plan, after, fetch)
        page = merge_listings(list(sources.values()), fetch, fetch, include_deleted=True)
        if not page.heads:  # an empty slot (most of them, in a young cluster)
            return page.next_after
        mine = await self._local_heads(plan.slot, after, page.heads)
        listed = {n: {h.path: h for h in heads} for n, heads in sources.items()}
        for head in page.heads:
            if beats(head, mine.get(head.path)):
                having = [n for n, by_path in listed.items() if by_path.get(head.path) == head]
                await self._copy_head(plan, head, having)
        return page.next_after

    async def _list(self, plan: SlotPlan, after: str | None,
                    fetch: int) -> dict[str, list[Head]]:
        """One listing page from a read quorum of the slot's holders, reachable
        ones first, the next one asked in place of each that fails."""
        reachable = self._ctx.reachable(plan.read_set)
        candidates = [n for n in [*reachable, *plan.read_set] if n != self._me]
        candidates = list(dict.fromkeys(candidates))
        need = plan.read_quorum
        answers: dict[str, list[Head]] = {}
        failures: dict[str, str] = {}

        async def ask(node: str) -> None:
            try:
                with trio.move_on_after(self.settings.list_timeout):
                    replica = self._ctx.replica_for(node)
                    answers[node] = await replica.list_heads(plan.slot, "", after, fetch)
                    return
                failures[node] = "timed out"
            except Exception as exc:
                failures[node] = str(exc)

        while len(answers) < need and candidates:
            batch = candidates[:need - len(answers)]
            del candidates[:len(batch)]
            async with trio.open_nursery() as nursery:
                for node in batch:
                    nursery.start_soon(ask, node)
        if len(answers) < need:
            why = "; ".join(f"{n}: {e}" for n, e in sorted(failures.items()))
            raise SlotUnavailable(f"{len(answers)} of {', '.join(plan.read_set)} answered, "
                                  f"a copy needs {need}" + (f" ({why})" if why else ""))
        # keep the read set's order: the first holder of a head is read first
        return {n: answers[n] for n in plan.read_set if n in answers}

    async def _local_heads(self, slot: int, after: str | None,
                           wanted: list[Head]) -> dict[str, Head | None]:
        """This node's heads of the paths of `wanted` (one listing, and a
        lookup for each path past it when the listing was cut short)."""
        fetch = self.settings.page_size
        found = await self._local.list_heads(slot, "", after, fetch)
        mine: dict[str, Head | None] = {h.path: h for h in found}
        if len(found) >= fetch:
            last = found[-1].path
            for head in wanted:
                if head.path > last:
                    mine[head.path] = (await self._local.get_head(slot, head.path)).head
        return mine

    async def _copy_head(self, plan: SlotPlan, head: Head, having: list[str]) -> None:
        # Those that listed exactly this head first; the other holders may
        # have it too (a part read from one that has not fails over).
        order = [*having, *(n for n in self._ctx.reachable(plan.read_set) if n not in having)]
        obj = CoordinatedObject(head, tuple(n for n in order if n != self._me), degraded=False)
        sent = await repair_replica(self._ctx, self._me, obj, write_result=_result_of(head, plan))
        self.stats.heads_copied += 1
        self.stats.bytes_copied += sent
        delay = self._rate.take(self._clock(), sent + HEAD_COST_BYTES)
        if delay > 0:
            await trio.sleep(delay)

    async def _confirm_every(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            await self._confirm()

    async def _confirm(self) -> None:
        """Record every copied slot in the layout, in one change."""
        # Shielded: a confirmation cut off half-way would forget its slots.
        with trio.CancelScope(shield=True):
            await self._confirm_copied()

    async def _confirm_copied(self) -> None:
        async with self._confirming:
            if not self._copied:
                return
            slots, self._copied = self._copied, set()
            confirmed: list[int] = []

            def change(layout: Layout) -> Layout:
                wanted = layout.slots_to_copy(self._me)
                confirmed[:] = sorted(s for s in slots if s in wanted)
                return layout.confirm(self._me, *confirmed) if confirmed else layout

            try:
                await self._layout.update(change)
            except BaseException:
                self._copied |= slots
                raise
            self.stats.slots_copied += len(confirmed)
            if confirmed:
                log.info("holds %d more slots (copied in)", len(confirmed))

    # -- drop -----------------------------------------------------------------------

    async def _drop(self) -> bool:
        layout = self._layout.current
        candidates = layout.slots_to_drop(self._me)
        if not candidates:
            return True
        # Exchange first (RFC 0011 §4): a target that started draining
        # meanwhile is no target on the merged layout, and the slot waits.
        targets = {t for s in candidates for t in layout.targets(s)} - {self._me}
        answered = await self._exchange(targets)
        dropped: list[int] = []

        def change(current: Layout) -> Layout:
            droppable = current.slots_to_drop(self._me) & candidates
            dropped[:] = sorted(s for s in droppable
                                if set(current.targets(s)) - {self._me} <= answered)
            return current.drop(self._me, *dropped) if dropped else current

        await self._layout.update(change)
        # Holdings first, data after: a crash in between leaves data of a slot
        # not held, which the sweep at start removes.
        self._dropped.update(dropped)
        for slot in dropped:
            await self._local.drop_slot(slot)
            self.stats.slots_dropped += 1
        if dropped:
            log.info("gave up %d slots (every target holds them)", len(dropped))
        return targets <= answered

    # -- roles ----------------------------------------------------------------------

    def _promotable(self, layout: Layout) -> bool:
        role = layout.role(self._me)
        if role is Role.JOINING:
            return not layout.slots_to_copy(self._me)
        if role is Role.DRAINING:
            return not layout.held_by(self._me)
        return False

    async def _promote(self) -> None:
        if not self._promotable(self._layout.current):
            return

        def change(layout: Layout) -> Layout:
            return layout.promote(self._me) if self._promotable(layout) else layout

        await self._layout.update(change)


def _result_of(head: Head, plan: SlotPlan) -> dict[str, Any] | None:
    """The write result a coordinator recorded with `head` (None without a
    write id): its count is the quorum the write needed, as recorded."""
    if not head.write_id:
        return None
    result = delete_result if head.deleted else put_result
    return result(head, plan.target_quorum)

