"""Read repair: replicas a read found behind the winner get its content and head.

Off the client's path: a repair runs in the coordinator's background nursery
(`Coordination.spawn`), at most `repair_concurrency` at once and at most
`repair_backlog` waiting (beyond that a repair is skipped: the next read, or
anti-entropy, finds the replica behind again). The winner's bytes are read
from the replicas that hold it, part by part with fallback, checked against
the head's etag before the head is applied, and applied through the same
`put_part` + `apply_head` a write uses, so a repair is idempotent and never
makes a replica go backwards (the replica applies a head only if it wins).
A part a verified read found bad or missing on a holder is fetched again
there alone (`refetch`, `ops/part_restore`, rfcs/0017), in the same
background and within the same bounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import trio

from rimio.core.head import Head
from rimio.core.replica import PartInfo, RestoreUnsupported
from rimio.ops.coordination import Coordination, log
from rimio.ops.part_restore import restore_one_part
from rimio.ops.quorum_read import CoordinatedObject, read_coordinated


class RepairFailed(Exception):
    """The winner's bytes as read do not match its head."""


class ReadRepair:
    def __init__(self, ctx: Coordination) -> None:
        self._ctx = ctx
        self._running = trio.Semaphore(max(1, ctx.settings.repair_concurrency))
        # (node, path, head sha), and the part's index for a single-part re-fetch
        self._pending: set[tuple[str, ...]] = set()
        self.repaired = 0
        self.failed = 0
        self.skipped = 0
        self.refetched = 0  # lost parts (corrupt, missing) sent to fetch again, one each

    def schedule(self, obj: CoordinatedObject) -> None:
        """Repair every replica `obj` found behind its winner, in the background."""
        if not obj.holders:
            return
        for node in obj.behind:
            self._enqueue((node, obj.head.path, obj.head.sha256), node, obj)

    def refetch(self, node: str, head: Head, index: int, holders: tuple[str, ...]) -> None:
        """Bring back, in the background, part `index` of `head` that `node`
        holds no good copy of any more (it failed its sha256 check there and
        was quarantined, or it is missing), from the other `holders`: that
        part alone (`restore_one_part`, RFC 0017), checked by `node` against
        its own part row. A node too old to restore one part gets the whole
        object through `repair_replica` (parts still good there are verified
        and reused, the head, already current there, stays as it is)."""
        others = tuple(h for h in holders if h != node)
        if others:
            self.refetched += 1
            obj = CoordinatedObject(head, others, degraded=False)
            self._enqueue((node, head.path, head.sha256, str(index)), node, obj,
                          partial(self._restore, node, obj, index))

    async def _restore(self, node: str, obj: CoordinatedObject, index: int) -> None:
        try:
            await restore_one_part(self._ctx, node, obj.head, index, obj.holders)
        except RestoreUnsupported:
            await repair_replica(self._ctx, node, obj)

    def _enqueue(self, key: tuple[str, ...], node: str, obj: CoordinatedObject,
                 job: Callable[[], Awaitable[object]] | None = None) -> None:
        if key in self._pending:
            return
        if len(self._pending) >= self._ctx.settings.repair_backlog:
            self.skipped += 1
            return
        self._pending.add(key)
        if job is None:
            job = partial(repair_replica, self._ctx, node, obj)
        if not self._ctx.spawn(self._task(key, node, obj, job)):
            self._pending.discard(key)
            self.skipped += 1

    def _task(self, key: tuple[str, ...], node: str, obj: CoordinatedObject,
              job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                async with self._running:
                    await job()
                self.repaired += 1
            except Exception as exc:
                self.failed += 1
                log.info("read repair of %s on %s failed: %s", obj.head.path, node, exc)
            finally:
                self._pending.discard(key)
        return run


async def repair_replica(ctx: Coordination, node: str, obj: CoordinatedObject, *,
                         write_result: dict[str, Any] | None = None) -> int:
    """Bring `node` up to `obj.head`, reading its bytes from `obj.holders`
    (part by part, falling back to the next holder); `write_result` is
    recorded with the head there (slot movement carries the latest write's).
    Returns the bytes sent."""
    head = obj.head
    plan = ctx.plan_for(head.slot_id)
    target = ctx.replica_for(node)
    if head.deleted:
        await target.apply_head(head, (), None, write_result, plan.layout_version)
        return 0
    whole = hashlib.sha256()
    if head.size_bytes <= ctx.settings.inline_max_bytes:
        data = b""
        if head.size_bytes:
            data = b"".join([c async for c in _hashed(
                read_coordinated(ctx, obj, 0, head.size_bytes - 1), whole)])
        _check(whole, head.etag, head.path)
        await target.apply_head(head, (), data, write_result, plan.layout_version)
        return len(data)
    parts: list[PartInfo] = []
    try:
        for index in range(head.part_count):
            start = index * head.part_size
            end = min(start + head.part_size, head.size_bytes) - 1
            chunks = _hashed(read_coordinated(ctx, obj, start, end), whole)
            parts.append(await target.put_part(head.slot_id, head.path, head.generation,
                                               index, chunks))
        _check(whole, head.etag, head.path)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(ctx.settings.cleanup_timeout):
            try:
                await target.abort(head.slot_id, head.path, head.generation)
            except Exception as exc:
                log.info("abort of a repair of %s on %s failed: %s", head.path, node, exc)
        raise
    await target.apply_head(head, parts, None, write_result, plan.layout_version)
    return head.size_bytes


async def _hashed(chunks: AsyncIterator[bytes], whole: hashlib._Hash) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        whole.update(chunk)
        yield chunk


def _check(whole: hashlib._Hash, etag: str, path: str) -> None:
    if whole.hexdigest() != etag:
        raise RepairFailed(f"the bytes read for {path} do not match its etag")
