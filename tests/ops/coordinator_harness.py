"""A slot's replicas as `ReplicaDouble`s, and coordinators over them, for the
coordinator tests: one plan for every slot (the replicas in order), liveness
as a set of nodes known dead, and small sizes so objects span many parts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from replica_double import ReplicaDouble

from rimio.core.quorum import SlotPlan
from rimio.core.slots import slot_for_path
from rimio.ops.coordinator import Coordinator, CoordinatorSettings

PART = 16
INLINE = 8
TOTAL_SLOTS = 8
SETTINGS = CoordinatorSettings(inline_max_bytes=INLINE, part_size=PART,
                               max_object_bytes=100_000, upload_buffer_chunks=2)


class Harness:
    def __init__(self, nodes: int = 3, write_quorum: int = 2, *,
                 settings: CoordinatorSettings = SETTINGS) -> None:
        self.names = tuple(f"n{i}" for i in range(nodes))
        self.replicas = {n: ReplicaDouble(n) for n in self.names}
        self.dead: set[str] = set()
        self.write_quorum = write_quorum
        self.layout_version = 1
        self.settings = settings
        self.refreshes = 0
        self.clock = 1000.0

    def plan_for(self, slot: int) -> SlotPlan:
        return SlotPlan(slot=slot, targets=self.names, holders=self.names,
                        write_quorum=self.write_quorum, layout_version=self.layout_version)

    def is_reachable(self, node_id: str) -> bool:
        return node_id not in self.dead

    def wall_clock(self) -> float:
        self.clock += 1.0
        return self.clock

    async def refresh_layout(self) -> None:
        self.refreshes += 1
        self.layout_version = max(r.layout_version for r in self.replicas.values())

    def coordinator(self, node_id: str = "n0") -> Coordinator:
        return Coordinator(node_id, plan_for=self.plan_for, replica_for=self.replicas.__getitem__,
                           liveness=self, settings=self.settings, total_slots=TOTAL_SLOTS,
                           wall_clock=self.wall_clock, refresh_layout=self.refresh_layout)

    def kill(self, *nodes: str, known: bool = True) -> None:
        """Take `nodes` down; `known`: the failure detector knows it."""
        for n in nodes:
            self.replicas[n].down = True
            if known:
                self.dead.add(n)

    def revive(self, *nodes: str) -> None:
        for n in nodes:
            self.replicas[n].down = False
            self.dead.discard(n)

    def heads(self, path: str) -> dict[str, object]:
        return {n: r.heads.get(path) for n, r in self.replicas.items()}

    def pending(self) -> int:
        return sum(len(r.pending) for r in self.replicas.values())


def slot_of(path: str) -> int:
    return slot_for_path(path, TOTAL_SLOTS)


async def chunks(data: bytes, size: int = 5) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
        await trio.lowlevel.checkpoint()


async def put(coord: Coordinator, path: str, data: bytes, *, streamed: bool | None = None,
              write_id: str | None = None) -> dict[str, object]:
    """PUT through `coord` as ObjectService hands it over: inline bytes when
    small, else a stream."""
    if streamed is None:
        streamed = len(data) > INLINE
    content = chunks(data) if streamed else data
    outcome = await coord.put(slot_of(path), path, content, write_id=write_id)
    return outcome.result


async def get(coord: Coordinator, path: str) -> bytes:
    obj, _ = await coord.open_read(slot_of(path), path)
    if obj.head.size_bytes == 0:
        return b""
    return b"".join([c async for c in coord.read(obj, 0, obj.head.size_bytes - 1)])
