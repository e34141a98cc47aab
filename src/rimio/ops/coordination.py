"""What every step of a coordinated request needs: the slot's plan, the
replicas, liveness, the limits and bounds, and the background nursery.

`Coordination` is handed to the quorum modules (`quorum_heads`,
`quorum_write`, `part_upload`, `quorum_read`, `read_repair`, `quorum_list`)
so each of them stays a function of what it is given, and the coordinator
(`ops/coordinator`) only puts them together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from rimio.config import StorageConfig
from rimio.core.head import Head
from rimio.core.quorum import SlotPlan
from rimio.core.replica import Replica
from rimio.ops.liveness import Liveness

log = logging.getLogger("rimio.coordinator")


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    """Sizes from the cluster's storage settings, and the bounds of waiting.

    Durations are in seconds of trio's clock (never the wall clock)."""

    inline_max_bytes: int
    part_size: int
    max_object_bytes: int
    # A replica that has not answered a head request by then counts as failed.
    head_timeout: float = 5.0
    # Once a read quorum answered, the others get this long before they are not waited for.
    head_grace: float = 0.05
    # Once a write is acknowledged, in-flight applies get this long, so that
    # `committed_replicas` counts them.
    apply_grace: float = 0.5
    # An apply that has not answered by then counts as failed (outcome unknown).
    apply_timeout: float = 10.0
    # Chunks buffered per replica during a streamed PUT (each at most 1 MiB).
    upload_buffer_chunks: int = 4
    # A replica whose buffer stays full this long is dropped from the write...
    upload_lag_grace: float = 1.0
    # ...unless the write cannot be acknowledged without it: then this long.
    upload_stall_timeout: float = 30.0
    # Read repair: replicas repaired at once, and repairs waiting at most.
    repair_concurrency: int = 4
    repair_backlog: int = 256
    # Best-effort cleanups (abort of dropped uploads) give up after this long.
    cleanup_timeout: float = 10.0


def settings_for(storage: StorageConfig) -> CoordinatorSettings:
    """The coordinator's sizes from the cluster's storage settings: an object
    travels inline up to the store's inline limit (never above a part, as
    the store keeps it), and is cut into the store's part size."""
    return CoordinatorSettings(
        inline_max_bytes=min(storage.inline_max_bytes, storage.part_size_bytes),
        part_size=storage.part_size_bytes,
        max_object_bytes=storage.max_object_bytes)


async def _no_refresh() -> None:
    return None


async def ask_all(nodes: Sequence[str], ask: Callable[[str], Awaitable[None]],
                  enough: Callable[[], bool], grace: float) -> None:
    """Run `ask(node)` for every node at once. Once `enough()` holds (checked
    as each ask finishes) or every ask finished, the unfinished ones get
    `grace` seconds more and are then cancelled. Each `ask` records its own
    answer and handles its own failures (what a quorum round waits for)."""
    if not nodes:
        return
    finished = 0
    sufficient = trio.Event()
    all_done = trio.Event()

    async def one(node: str) -> None:
        nonlocal finished
        try:
            await ask(node)
        finally:
            finished += 1
            if finished == len(nodes):
                all_done.set()
            if enough() or all_done.is_set():
                sufficient.set()

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(one, node)
        await sufficient.wait()
        if not all_done.is_set():
            with trio.move_on_after(grace):
                await all_done.wait()
        nursery.cancel_scope.cancel()


@dataclass(slots=True)
class Coordination:
    """The coordinator's view of the cluster, shared by its parts."""

    node_id: str
    plan_for: Callable[[int], SlotPlan]
    replica_for: Callable[[str], Replica]
    liveness: Liveness
    settings: CoordinatorSettings
    wall_clock: Callable[[], float] = time.time
    # Called when a replica answers StaleLayout: bring this node's layout up
    # to date (the layout service merges the newer one) before a retry.
    refresh_layout: Callable[[], Awaitable[None]] = _no_refresh
    # Every slot of the layout (for LIST's quorum check).
    total_slots: int = 0
    spawn: Callable[[Callable[[], Awaitable[None]]], bool] = field(
        default=lambda _task: False)
    # Called when a holder of `head` could not serve its part `index` because
    # its copy failed the sha256 check (and was quarantined) or is missing:
    # `(node, head, index, holders)`; the coordinator fetches that part there
    # again from the other holders, in the background (rfcs/0013, 0017).
    part_lost: Callable[[str, Head, int, tuple[str, ...]], None] = field(
        default=lambda _node, _head, _index, _holders: None)

    def reachable(self, nodes: Iterable[str]) -> list[str]:
        """`nodes` the failure detector does not hold dead, in the order given."""
        return [n for n in nodes if self.liveness.is_reachable(n)]

    def local_first(self, nodes: Iterable[str]) -> list[str]:
        """`nodes` with this node first: its own replica costs no network hop."""
        ordered = list(nodes)
        if self.node_id in ordered:
            ordered.remove(self.node_id)
            ordered.insert(0, self.node_id)
        return ordered
