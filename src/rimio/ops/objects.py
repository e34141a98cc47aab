"""`ObjectService`: the coordinator of reads and writes on one node.

It routes a path to its slot and replica set, checks what a request may
send (write ids, sizes, Content-Length), hands the body to the store's write
sequence (which owns generations, replays, preconditions and crash safety),
and decides what a client sees: the result, or the error an outcome means.
In this version a slot's replica set must be this node alone: a slot placed
on other nodes answers 503 until replication between nodes lands (Phase 2).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import trio

from rimio.cluster.peers import PeerClient
from rimio.config import NodeConfig
from rimio.core.head import Head
from rimio.core.listing import merge_listings
from rimio.core.paths import normalize_path
from rimio.core.placement import replicas_for_slot
from rimio.core.slots import slot_for_path
from rimio.core.writes import MUST_EXIST, CommitOutcome, Precondition, WriteReport
from rimio.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    QuorumLost,
)
from rimio.ops.cursor import decode_cursor, encode_cursor
from rimio.ops.liveness import EveryoneReachable, Liveness
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
SLOT_EPOCH = 1  # the layout is fixed by the configuration in this version


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


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    result: dict[str, Any]
    replay: bool


# The key of a recorded write result that names its operation ("put" or
# "delete"): a write id is bound to the operation that first used it. It is
# kept with the result in storage and never shown to the client.
OPERATION = "operation"


def operation_of(result: dict[str, Any]) -> str:
    """The operation a recorded write result answered (results recorded
    before operations were, are told apart by their shape)."""
    recorded = result.get(OPERATION)
    if isinstance(recorded, str):
        return recorded
    return "delete" if result.get("deleted") else "put"


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
    ) -> None:
        """`peers` reaches other nodes (forwarding, listings); without it only
        this node's slots are served. `liveness` says which nodes are worth
        trying; without it, all are."""
        self._config = config
        self._store = store
        self._wall_clock = wall_clock
        self.max_object_bytes = config.cluster.storage.max_object_bytes
        self._addresses = {n.node_id: str(n.advertise_addr) for n in config.cluster.nodes}
        self._liveness: Liveness = liveness if liveness is not None else EveryoneReachable()
        self.peers = peers
        # slot → its replica set. The layout is fixed by the configuration in
        # this version, so each slot's set is hashed out once, not per request
        # (a blob request resolves its path twice: to route it, then to serve it).
        self._replica_sets: dict[int, tuple[str, ...]] = {}

    # -- routing ----------------------------------------------------------------

    def resolve(self, raw_path: str) -> Resolution:
        path = normalize_path(raw_path)
        cluster = self._config.cluster
        slot = slot_for_path(path, cluster.replication.total_slots)
        replicas = self._replica_sets.get(slot)
        if replicas is None:
            layout = [n.node_id for n in cluster.nodes]
            replicas = tuple(replicas_for_slot(slot, layout, cluster.effective_replicas))
            self._replica_sets[slot] = replicas
        return Resolution(path, slot, replicas, cluster.write_quorum, SLOT_EPOCH)

    def route(self, raw_path: str) -> tuple[Resolution, str | None]:
        """Where a request for `raw_path` is served: here (None) or the address
        of the replica to forward it to. Raises QuorumLost when nobody can."""
        res = self.resolve(raw_path)
        me = self._config.node_id
        if res.replicas == (me,):
            return res, None
        if me in res.replicas or len(res.replicas) > 1:
            raise QuorumLost(
                f"slot {res.slot_id} is placed on {', '.join(res.replicas)}; with more than one "
                "replica per slot, writes and reads need replication between nodes, which this "
                "version does not have yet"
            )
        owner = res.replicas[0]
        if not self._liveness.is_reachable(owner):
            raise QuorumLost(f"slot {res.slot_id} is held by {owner}, which is down")
        return res, self._addresses[owner]

    def _local_slot(self, raw_path: str) -> Resolution:
        res, forward_to = self.route(raw_path)
        if forward_to is not None:
            raise QuorumLost(f"slot {res.slot_id} is held by {res.replicas[0]}, not this node")
        return res

    # -- writes -----------------------------------------------------------------

    async def put(self, req: PutRequest) -> WriteOutcome:
        res = self._local_slot(req.path)
        write_id = validate_write_id(req.write_id)
        if req.content_length is not None and req.content_length > self.max_object_bytes:
            raise PayloadTooLarge(f"the object is larger than {self.max_object_bytes} bytes")
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

    @staticmethod
    def _put_result(head: Head) -> dict[str, Any]:
        return {"path": head.path, "slot_id": head.slot_id, "generation": head.generation,
                "etag": head.etag, "size_bytes": head.size_bytes, "committed_replicas": 1,
                OPERATION: "put"}

    @staticmethod
    def _delete_result(head: Head) -> dict[str, Any]:
        return {"path": head.path, "slot_id": head.slot_id, "generation": head.generation,
                "deleted": True, "committed_replicas": 1, OPERATION: "delete"}

    @staticmethod
    def _answer(report: WriteReport, operation: str) -> WriteOutcome:
        assert report.result is not None
        replay = report.outcome is CommitOutcome.REPLAY
        if replay and operation_of(report.result) != operation:
            raise Conflict(f"this X-Rimio-Write-Id was used by a {operation_of(report.result)} "
                           f"of this path; a {operation} needs a new one")
        result = {k: v for k, v in report.result.items() if k != OPERATION}
        # SUPERSEDED: a concurrent write with a higher generation won; ours is
        # acknowledged as written and already overwritten, like any older write.
        return WriteOutcome(result, replay=replay)

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
        res = self._local_slot(raw_path)
        write_id = validate_write_id(write_id)
        report = await self._store.write(
            res.slot_id, res.path, TOMBSTONE, write_id=write_id or "", clock=self._wall_clock,
            precondition=MUST_EXIST, result_for=self._delete_result)
        if report.outcome is CommitOutcome.PRECONDITION_FAILED:
            if report.current is None:
                raise NotFound(f"{res.path} does not exist")
            # Already deleted: the same answer as the delete that did it.
            result = self._delete_result(report.current)
            del result[OPERATION]
            return WriteOutcome(result, replay=False)
        return self._answer(report, "delete")

    # -- reads ------------------------------------------------------------------

    async def open_read(self, raw_path: str,
                        inline_up_to: int = -1) -> tuple[StoredObject, bytes | None]:
        """The current object at `path` (404 if never written, 410 if deleted)
        and, when it is at most `inline_up_to` bytes, its content."""
        res = self._local_slot(raw_path)
        obj, data = await self._store.read_small(res.slot_id, res.path, inline_up_to)
        if obj is None:
            raise NotFound(f"{res.path} does not exist")
        if obj.head.deleted:
            raise Gone(f"{res.path} was deleted")
        return obj, data

    def read(self, obj: StoredObject, start: int, end: int) -> AsyncIterator[bytes]:
        return self._store.read_object(obj, start, end)

    async def check_readable(self, obj: StoredObject) -> None:
        await self._store.check_parts_present(obj)

    def storage_stats(self) -> dict[str, Any]:
        """Counters of this node's storage engine, for diagnostics and benchmarks."""
        store = self._store
        return {"slot_cache": dataclasses.asdict(store.slot_stats),
                "read_cache": dataclasses.asdict(store.read_cache_stats),
                "recovered_writes": store.recovered_writes,
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
        me = self._config.node_id
        others = [n for n in self._addresses if n != me]
        sources: list[list[Head]] = [[] for _ in range(len(others) + 1)]

        async def local() -> None:
            sources[0] = await self.local_heads(prefix, after, fetch)

        async def remote(i: int, node_id: str) -> None:
            if self.peers is None:
                raise QuorumLost("no peer client to list other nodes with")
            if not self._liveness.is_reachable(node_id):
                raise QuorumLost(f"listing needs {node_id}, which is down")
            sources[i] = await self.peers.list_heads(self._addresses[node_id], prefix, after,
                                                     fetch, node_id=node_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(local)
            for i, node_id in enumerate(others, start=1):
                nursery.start_soon(remote, i, node_id)
        page = merge_listings(sources, fetch, limit, include_deleted)
        items = [
            {"path": h.path, "generation": h.generation, "etag": h.etag or None,
             "size_bytes": h.size_bytes, "deleted": h.deleted, "updated_at": h.timestamp}
            for h in page.heads
        ]
        next_cursor = encode_cursor(page.next_after) if page.next_after is not None else None
        return {"items": items, "next_cursor": next_cursor}
