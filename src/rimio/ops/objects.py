"""`ObjectService`: the coordinator of reads and writes on one node.

It routes a path to its slot and replica set, checks what a request may
send (write ids, sizes, Content-Length), hands the body to the store's write
sequence (which owns generations, replays, preconditions and crash safety),
and decides what a client sees: the result, or the error an outcome means.
A slot held by this node alone (R = 1) is served straight from the store,
with no coordination on the way. Every other slot goes to the `Coordinator`
(`ops/coordinator`, RFC 0011 §7) when the node has one; without one, a slot
held by one other node is forwarded there and a replicated slot answers 503.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from rimio.cluster.layout import Placement, StaticPlacement, founding_layout
from rimio.cluster.peers import PeerClient
from rimio.config import NodeConfig
from rimio.core.head import Head
from rimio.core.layout import Role
from rimio.core.listing import merge_listings
from rimio.core.paths import normalize_path
from rimio.core.quorum import SlotPlan
from rimio.core.slots import slot_for_path
from rimio.core.writes import MUST_EXIST, CommitOutcome, Precondition, WriteReport
from rimio.errors import (
    BadRequest,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    QuorumLost,
)
from rimio.ops.coordinator import CoordinatedObject, Coordinator
from rimio.ops.cursor import decode_cursor, encode_cursor
from rimio.ops.liveness import EveryoneReachable, Liveness
from rimio.ops.results import (
    OPERATION,
    WriteOutcome,
    client_view,
    delete_result,
    operation_of,
    put_result,
    replayed,
)
from rimio.storage.store import LocalStore, StoredObject
from rimio.storage.writes import TOMBSTONE, Content

_WRITE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Chunks are grouped (not joined) to this size before worker threads write
# and hash them: fewer thread hops per byte, hashing off the event loop.
_WRITE_BATCH = 1024 * 1024
# Bodies up to this size (with a Content-Length) take the one-hop path.
SMALL_OBJECT = _WRITE_BATCH
MAX_LIST_LIMIT = 10_000
DEFAULT_LIST_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Resolution:
    path: str
    slot_id: int
    replicas: tuple[str, ...]
    write_quorum: int
    slot_epoch: int


@dataclass(frozen=True, slots=True)
class PutRequest:
    path: str
    body: AsyncIterator[bytes]
    content_length: int | None = None
    write_id: str | None = None
    precondition: Precondition | None = None


# An object a read found: on this node's store, or by a coordinated read.
ReadableObject = StoredObject | CoordinatedObject
__all__ = ["OPERATION", "ObjectService", "PutRequest", "ReadableObject", "WriteOutcome",
           "operation_of"]


def validate_write_id(write_id: str | None) -> str | None:
    if write_id is None:
        return None
    if not _WRITE_ID.match(write_id):
        raise BadRequest("X-Rimio-Write-Id must be 1-128 characters of [A-Za-z0-9._:-]")
    return write_id


class ObjectService:
    def __init__(
        self, config: NodeConfig, store: LocalStore, wall_clock: Callable[[], float] = time.time,
        *, peers: PeerClient | None = None, liveness: Liveness | None = None,
        coordinator: Coordinator | None = None, placement: Placement | None = None,
    ) -> None:
        """`peers` reaches other nodes (forwarding, listings); without it only
        this node's slots are served. `liveness` says which nodes are worth
        trying; without it, all are. `coordinator` serves every slot that is
        not this node's alone. `placement` is the shared layout (the node's
        `LayoutService`); without it, the founding layout of the configuration,
        fixed."""
        self._config = config
        self._store = store
        self._wall_clock = wall_clock
        self.max_object_bytes = config.cluster.storage.max_object_bytes
        self._placement: Placement = (placement if placement is not None
                                      else StaticPlacement(founding_layout(config.cluster)))
        self._liveness: Liveness = liveness if liveness is not None else EveryoneReachable()
        self.peers = peers
        self.coordinator = coordinator

    # -- routing ----------------------------------------------------------------

    def resolve(self, raw_path: str) -> Resolution:
        path = normalize_path(raw_path)
        total_slots = (self.coordinator.ctx.total_slots if self.coordinator is not None
                       else self._placement.current.total_slots)
        slot = slot_for_path(path, total_slots)
        plan = self._plan(slot)
        return Resolution(path, slot, plan.targets, plan.write_quorum, plan.layout_version)

    def _plan(self, slot: int) -> SlotPlan:
        # The layout caches each slot's plan: a blob request resolves its path
        # twice (to route it, then to serve it) at no extra cost. With a
        # coordinator, its plans are the ones that count (the node gives it
        # the same layout).
        if self.coordinator is not None:
            return self.coordinator.plan(slot)
        return self._placement.current.plan(slot)

    def _address(self, node_id: str) -> str:
        address = self._placement.address_of(node_id)
        if address is None:
            raise QuorumLost(f"no address known for {node_id}")
        return address

    def route(self, raw_path: str) -> tuple[Resolution, str | None]:
        """Where a request for `raw_path` is served: here (None) or the address
        of the replica to forward it to. Raises QuorumLost when nobody can."""
        res = self.resolve(raw_path)
        if self.coordinator is not None:
            return res, None  # here: from the store, or through the coordinator
        me = self._config.node_id
        if len(res.replicas) > 1:
            raise QuorumLost(
                f"slot {res.slot_id} is placed on {', '.join(res.replicas)}; this node has no "
                "coordinator to replicate writes and reads with"
            )
        # One replica per slot: while it moves, its current holder serves it.
        plan = self._plan(res.slot_id)
        serving = plan.read_set or plan.targets
        if not serving:
            raise QuorumLost(f"slot {res.slot_id} has no node to hold it")
        owner = serving[0]
        if owner == me:
            return res, None
        if not self._liveness.is_reachable(owner):
            raise QuorumLost(f"slot {res.slot_id} is held by {owner}, which is down")
        return res, self._address(owner)

    def _local_slot(self, raw_path: str) -> Resolution:
        res, forward_to = self.route(raw_path)
        if forward_to is not None:
            raise QuorumLost(f"slot {res.slot_id} is held by another node, not this one")
        return res

    def _coordinated(self, raw_path: str) -> tuple[Resolution, Coordinator | None]:
        """Where a request is served: (res, None) from this node's store (the
        fast path: the slot is this node's alone), or (res, coordinator)."""
        res = self._local_slot(raw_path)
        coordinator = self.coordinator
        if coordinator is None:
            return res, None
        me = (self._config.node_id,)
        plan = self._plan(res.slot_id)
        if plan.write_set == me and plan.read_set == me:
            return res, None
        return res, coordinator

    # -- writes -----------------------------------------------------------------

    async def put(self, req: PutRequest) -> WriteOutcome:
        res, coordinator = self._coordinated(req.path)
        write_id = validate_write_id(req.write_id)
        if req.content_length is not None and req.content_length > self.max_object_bytes:
            raise PayloadTooLarge(f"the object is larger than {self.max_object_bytes} bytes")
        if coordinator is not None:
            return await self._put_coordinated(coordinator, res, req, write_id)
        content: Content
        if req.content_length is not None and req.content_length <= SMALL_OBJECT:
            # Small enough to hold: the store writes it in one worker-thread call.
            content = await self._whole_body(req.body, req.content_length)
        else:
            content = self._batches(req.body, req.content_length)
        report = await self._store.write(
            res.slot_id, res.path, content, write_id=write_id or "", clock=self._wall_clock,
            precondition=req.precondition, result_for=self._put_result)
        if report.outcome is CommitOutcome.PRECONDITION_FAILED:
            raise PreconditionFailed("the object does not match the request's precondition")
        return self._answer(report, "put")

    async def _put_coordinated(self, coordinator: Coordinator, res: Resolution,
                               req: PutRequest, write_id: str | None) -> WriteOutcome:
        content: bytes | AsyncIterator[bytes]
        if (req.content_length is not None
                and req.content_length <= coordinator.settings.inline_max_bytes):
            # Small enough to travel inline in the head's apply.
            content = await self._whole_body(req.body, req.content_length)
        else:
            content = self._batches(req.body, req.content_length)
        return await coordinator.put(res.slot_id, res.path, content, write_id=write_id,
                                     precondition=req.precondition)

    @staticmethod
    def _put_result(head: Head) -> dict[str, Any]:
        return put_result(head)

    @staticmethod
    def _delete_result(head: Head) -> dict[str, Any]:
        return delete_result(head)

    @staticmethod
    def _answer(report: WriteReport, operation: str) -> WriteOutcome:
        assert report.result is not None
        if report.outcome is CommitOutcome.REPLAY:
            return replayed(report.result, operation)
        # SUPERSEDED: a concurrent write with a higher generation won; ours is
        # acknowledged as written and already overwritten, like any older write.
        return WriteOutcome(client_view(report.result), replay=False)

    @staticmethod
    async def _whole_body(body: AsyncIterator[bytes], content_length: int) -> bytes:
        data = bytearray()
        async for chunk in body:
            data += chunk
            if len(data) > content_length:
                raise BadRequest("the body is longer than its Content-Length")
        if len(data) != content_length:
            raise BadRequest("the body is shorter than its Content-Length")
        return bytes(data)

    async def _batches(self, body: AsyncIterator[bytes],
                       content_length: int | None) -> AsyncIterator[bytes]:
        """The body in batches of about `_WRITE_BATCH` bytes, checked against
        the size limit and the Content-Length as it arrives. Each batch is
        joined once (one copy; it was two with `bytearray +=` and `bytes()`):
        the store also takes a list of chunks unjoined, but hashing and
        writing 64 KiB chunks one by one costs a GIL hand-over per chunk in
        three threads, which measured no faster here than the one copy."""
        batch: list[bytes] = []
        batched = 0
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > self.max_object_bytes:
                raise PayloadTooLarge(f"the object is larger than {self.max_object_bytes} bytes")
            if content_length is not None and received > content_length:
                raise BadRequest("the body is longer than its Content-Length")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _WRITE_BATCH:
                yield b"".join(batch)
                batch, batched = [], 0
        if content_length is not None and received != content_length:
            raise BadRequest("the body is shorter than its Content-Length")
        if batch:
            yield b"".join(batch)

    async def delete(self, raw_path: str, write_id: str | None = None) -> WriteOutcome:
        res, coordinator = self._coordinated(raw_path)
        write_id = validate_write_id(write_id)
        if coordinator is not None:
            return await coordinator.delete(res.slot_id, res.path, write_id)
        report = await self._store.write(
            res.slot_id, res.path, TOMBSTONE, write_id=write_id or "", clock=self._wall_clock,
            precondition=MUST_EXIST, result_for=self._delete_result)
        if report.outcome is CommitOutcome.PRECONDITION_FAILED:
            if report.current is None:
                raise NotFound(f"{res.path} does not exist")
            # Already deleted: the same answer as the delete that did it.
            return WriteOutcome(client_view(self._delete_result(report.current)), replay=False)
        return self._answer(report, "delete")

    # -- reads ------------------------------------------------------------------

    async def open_read(self, raw_path: str,
                        inline_up_to: int = -1) -> tuple[ReadableObject, bytes | None]:
        """The current object at `path` (404 if never written, 410 if deleted)
        and, when it is at most `inline_up_to` bytes, its content."""
        res, coordinator = self._coordinated(raw_path)
        if coordinator is not None:
            return await coordinator.open_read(res.slot_id, res.path, inline_up_to)
        obj, data = await self._store.read_small(res.slot_id, res.path, inline_up_to)
        if obj is None:
            raise NotFound(f"{res.path} does not exist")
        if obj.head.deleted:
            raise Gone(f"{res.path} was deleted")
        return obj, data

    def read(self, obj: ReadableObject, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `[start, end]` (inclusive) of an object `open_read` found."""
        if isinstance(obj, CoordinatedObject):
            assert self.coordinator is not None
            return self.coordinator.read(obj, start, end)
        return self._store.read_object(obj, start, end)

    async def check_readable(self, obj: ReadableObject) -> None:
        # A coordinated read falls back to another holder for a missing part.
        if isinstance(obj, StoredObject):
            await self._store.check_parts_present(obj)

    def storage_stats(self) -> dict[str, Any]:
        """Counters of this node's storage engine, for diagnostics and benchmarks."""
        store = self._store
        return {"slot_cache": dataclasses.asdict(store.slot_stats),
                "read_cache": dataclasses.asdict(store.read_cache_stats),
                "verify": dataclasses.asdict(store.verify_stats),
                "recovered_writes": store.recovered_writes,
                "finished_drops": store.finished_drops,
                "migrated_slots": store.migrated_slots}

    async def local_heads(self, prefix: str, after: str | None, limit: int) -> list[Head]:
        """This node's current heads (tombstones included), for cluster listings."""
        return await self._store.list_heads(prefix, after, limit, include_deleted=True)

    async def list(
        self, prefix: str, limit: int, cursor: str | None, include_deleted: bool
    ) -> dict[str, Any]:
        """A page of the cluster-wide listing: every node's heads, merged."""
        if len(prefix.encode("utf-8")) > 1024 or any(ord(c) < 0x20 or ord(c) == 0x7F
                                                     for c in prefix):
            raise BadRequest("prefix is longer than 1024 bytes or has control characters")
        prefix = prefix.lstrip("/")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        after = decode_cursor(cursor) if cursor else None
        fetch = limit + 1
        sources: Sequence[Sequence[Head]]
        if self.coordinator is not None:
            sources = await self.coordinator.gather_listings(prefix, after, fetch)
        else:
            sources = await self._node_listings(prefix, after, fetch)
        page = merge_listings(sources, fetch, limit, include_deleted)
        items = [
            {"path": h.path, "generation": h.generation, "etag": h.etag or None,
             "size_bytes": h.size_bytes, "deleted": h.deleted, "updated_at": h.timestamp}
            for h in page.heads
        ]
        next_cursor = encode_cursor(page.next_after) if page.next_after is not None else None
        return {"items": items, "next_cursor": next_cursor}

    async def _node_listings(self, prefix: str, after: str | None,
                             fetch: int) -> Sequence[Sequence[Head]]:
        """Every member's heads (without a coordinator: each slot on one node)."""
        me = self._config.node_id
        layout = self._placement.current
        others = [n for n, m in sorted(layout.members.items())
                  if n != me and m.role is not Role.REMOVED]
        sources: list[list[Head]] = [[] for _ in range(len(others) + 1)]

        async def local() -> None:
            sources[0] = await self.local_heads(prefix, after, fetch)

        async def remote(i: int, node_id: str) -> None:
            if self.peers is None:
                raise QuorumLost("no peer client to list other nodes with")
            if not self._liveness.is_reachable(node_id):
                raise QuorumLost(f"listing needs {node_id}, which is down")
            sources[i] = await self.peers.list_heads(self._address(node_id), prefix, after,
                                                     fetch, node_id=node_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(local)
            for i, node_id in enumerate(others, start=1):
                nursery.start_soon(remote, i, node_id)
        return sources
