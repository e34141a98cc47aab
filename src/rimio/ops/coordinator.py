"""`Coordinator`: PUT, DELETE, GET, HEAD and LIST of any path, over its slot's replicas.

Any node runs one, for every path (RFC 0011 §7). It is given the layout as
`plan_for(slot) -> SlotPlan`, the replicas as `replica_for(node_id) ->
Replica` (this node's own one included), liveness, the sizes and a wall
clock, and puts together the quorum steps: `quorum_write` (with
`part_upload`), `quorum_read`, `read_repair` and `quorum_list`. It owns the
background nursery that read repair and late cleanups run in (`run`).
Client-facing checks (write ids, sizes, Content-Length) stay in
`ObjectService`, which hands it requests it cannot serve on its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from rimio.core.errors import Gone, NotFound
from rimio.core.head import Head
from rimio.core.quorum import SlotPlan
from rimio.core.replica import Replica
from rimio.core.writes import MUST_EXIST, Precondition
from rimio.ops.coordination import Coordination, CoordinatorSettings, settings_for
from rimio.ops.liveness import Liveness
from rimio.ops.quorum_list import gather_listings
from rimio.ops.quorum_read import CoordinatedObject, find_winner, read_coordinated, read_whole
from rimio.ops.quorum_write import Body, WriteRequest, coordinated_write
from rimio.ops.read_repair import ReadRepair
from rimio.ops.results import WriteOutcome

__all__ = ["CoordinatedObject", "Coordinator", "CoordinatorSettings", "settings_for"]


class Coordinator:
    def __init__(
        self, node_id: str, *, plan_for: Callable[[int], SlotPlan],
        replica_for: Callable[[str], Replica], liveness: Liveness,
        settings: CoordinatorSettings, total_slots: int,
        wall_clock: Callable[[], float] = time.time,
        refresh_layout: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._nursery: trio.Nursery | None = None
        self.ctx = Coordination(node_id, plan_for, replica_for, liveness, settings,
                                wall_clock=wall_clock, total_slots=total_slots,
                                spawn=self._spawn)
        if refresh_layout is not None:
            self.ctx.refresh_layout = refresh_layout
        self.repair = ReadRepair(self.ctx)
        self.ctx.part_lost = self.repair.refetch

    @property
    def settings(self) -> CoordinatorSettings:
        return self.ctx.settings

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the background work (read repair, late aborts) until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> bool:
        if self._nursery is None:
            return False  # not running: the work is left to anti-entropy
        self._nursery.start_soon(task)
        return True

    def plan(self, slot: int) -> SlotPlan:
        return self.ctx.plan_for(slot)

    # -- writes -------------------------------------------------------------------

    async def put(self, slot: int, path: str, content: Body, *, write_id: str | None = None,
                  precondition: Precondition | None = None) -> WriteOutcome:
        """Write `content` (bytes, or an async iterator of batches already
        checked against the size limits) as the next generation of `path`."""
        return await coordinated_write(self.ctx, WriteRequest(slot, path, content, write_id,
                                                              precondition))

    async def delete(self, slot: int, path: str, write_id: str | None = None) -> WriteOutcome:
        return await coordinated_write(self.ctx, WriteRequest(slot, path, None, write_id,
                                                              MUST_EXIST))

    # -- reads --------------------------------------------------------------------

    async def open_read(self, slot: int, path: str,
                        inline_up_to: int = -1) -> tuple[CoordinatedObject, bytes | None]:
        """The winning head of `path` (404 never written, 410 deleted) and,
        when it is at most `inline_up_to` bytes, its content."""
        obj = await find_winner(self.ctx, slot, path)
        if obj is None:
            raise NotFound(f"{path} does not exist")
        self.repair.schedule(obj)
        if obj.head.deleted:
            raise Gone(f"{path} was deleted", generation=obj.head.generation,
                       degraded=obj.degraded)
        data = None
        if obj.head.size_bytes <= inline_up_to:
            data = await read_whole(self.ctx, obj)
        return obj, data

    def read(self, obj: CoordinatedObject, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `[start, end]` (inclusive) of the object `open_read` found."""
        return read_coordinated(self.ctx, obj, start, end)

    async def gather_listings(self, prefix: str, after: str | None,
                              fetch: int) -> list[list[Head]]:
        """Every reachable node's heads for a listing page (QuorumLost when
        some slot's read quorum cannot answer)."""
        return await gather_listings(self.ctx, prefix, after, fetch)

    def stats(self) -> dict[str, Any]:
        return {"read_repair": {"repaired": self.repair.repaired,
                                "failed": self.repair.failed,
                                "skipped": self.repair.skipped,
                                "refetched": self.repair.refetched}}
