"""`LocalStore`: the node's disks seen from trio.

Owns the slot directories on the configured disks, one `SlotMeta` per slot
(opened lazily and kept open), the worker-thread limiter through which every
blocking call goes, start-up recovery of interrupted writes, and garbage
collection of superseded generations. Nothing here knows about HTTP or about
other nodes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from rimio.core.errors import (
    ConfigError,
    DiskError,
    InsufficientStorage,
    RimioError,
    StorageCorrupt,
)
from rimio.core.head import Head
from rimio.core.parts import spans_for_range
from rimio.core.paths import disk_segments
from rimio.core.writes import CommitOutcome, Precondition
from rimio.storage.disk import check_disk_usable
from rimio.storage.meta import PendingWrite, SlotMeta
from rimio.storage.parts import (
    TEMP_PREFIX,
    ObjectWriter,
    PartRecord,
    ensure_dir,
    prune_empty_dirs,
    read_range,
    remove_files,
)
from rimio.storage.slot_cache import SlotCache

T = TypeVar("T")

READ_CHUNK = 1024 * 1024
# How often the background evictor trims the slot cache back to its bound.
EVICT_INTERVAL = 0.2


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A committed head with the part files that hold its bytes."""

    head: Head
    parts: tuple[PartRecord, ...]
    slot_dir: Path


class LocalStore:
    def __init__(
        self, disks: Sequence[Path], *, total_slots: int, part_size: int, io_threads: int = 8,
        max_open_slots: int = 128,
    ) -> None:
        if not disks:
            raise ConfigError("a node needs at least one disk")
        self._disks = [Path(d) for d in disks]
        self.total_slots = total_slots
        self.part_size = part_size
        self._limiter = trio.CapacityLimiter(io_threads)
        self._slot_dirs: dict[int, Path] = {}
        self._cache = SlotCache(self.slot_dir, max_open=max_open_slots,
                                on_first_open=self._recover_slot, on_create=self._create_slot)
        self.recovered_writes = 0

    # -- life cycle -----------------------------------------------------------

    async def open(self) -> None:
        """Create the disk layout, find existing slots and clean interrupted writes."""
        for disk in self._disks:
            check_disk_usable(disk)
        await self._thread(self._open_sync)

    def _open_sync(self) -> None:
        for disk in self._disks:
            try:
                ensure_dir(disk / "slots")
            except OSError as exc:
                raise ConfigError(f"disk {disk} is not usable: {exc.strerror or exc}") from None
            probe = disk / f"{TEMP_PREFIX}probe"
            try:
                with open(probe, "wb") as f:
                    f.write(b"ok")
                    os.fsync(f.fileno())
                os.unlink(probe)
            except OSError as exc:
                raise ConfigError(f"disk {disk} is not writable: {exc.strerror or exc}") from None
        for disk in self._disks:
            for entry in os.scandir(disk / "slots"):
                if entry.is_dir() and entry.name.isdigit():
                    slot = int(entry.name)
                    if slot < self.total_slots and slot not in self._slot_dirs:
                        self._slot_dirs[slot] = Path(entry.path)
        # Every slot is opened once now, so interrupted writes are cleaned up
        # before the node serves; the cache closes them again as it fills up.
        for slot in sorted(self._slot_dirs):
            with self._cache.acquire(slot):
                pass

    async def close(self) -> None:
        await self._thread(self._cache.close_all)

    # -- plumbing ---------------------------------------------------------------

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def slot_dir(self, slot: int) -> Path:
        known = self._slot_dirs.get(slot)
        if known is not None:
            return known
        return self._disks[slot % len(self._disks)] / "slots" / str(slot)

    def _create_slot(self, slot: int) -> None:
        d = self.slot_dir(slot)
        if slot not in self._slot_dirs:
            ensure_dir(d)
            self._slot_dirs[slot] = d

    def _recover_slot(self, slot: int, meta: SlotMeta) -> None:
        for pending in meta.pending():
            self._discard_pending_sync(slot, meta, pending)
            self.recovered_writes += 1

    async def _with_slot(self, slot: int, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(meta, *args)` in a worker thread, holding the slot."""

        def locked() -> T:
            with self._cache.acquire(slot) as meta:
                return fn(meta, *args)

        return await self._thread(locked)

    async def run_evictor(self, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Close surplus slot databases in the background, off the request path."""
        self._cache.evict_inline = False
        try:
            task_status.started()
            while True:
                await trio.sleep(EVICT_INTERVAL)
                if self._cache.over_limit:
                    await self._thread(self._cache.evict)
        finally:
            self._cache.evict_inline = True

    # -- reads ------------------------------------------------------------------

    async def current_head(self, slot: int, path: str) -> Head | None:
        return await self._with_slot(slot, SlotMeta.current_head, path)

    async def max_generation(self, slot: int, path: str) -> int:
        return await self._with_slot(slot, SlotMeta.max_generation, path)

    async def write_result(self, slot: int, path: str, write_id: str) -> dict[str, Any] | None:
        return await self._with_slot(slot, SlotMeta.write_result, path, write_id)

    async def get_object(self, slot: int, path: str) -> StoredObject | None:
        obj, _ = await self.read_small(slot, path, max_bytes=-1)
        return obj

    async def read_object(self, obj: StoredObject, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes `[start, end]` of a stored object in chunks of at most 1 MiB."""
        parts = {p.index: p for p in obj.parts}
        for span in spans_for_range(start, end, obj.head.part_size):
            part = parts[span.index]
            path = obj.slot_dir / part.local_path
            offset, remaining = span.offset, span.length
            while remaining > 0:
                n = min(READ_CHUNK, remaining)
                try:
                    data = await self._thread(read_range, path, offset, n)
                except FileNotFoundError:
                    raise StorageCorrupt(f"part file {part.local_path} is missing") from None
                if len(data) != n:
                    raise StorageCorrupt(f"part file {part.local_path} is truncated")
                yield data
                offset += n
                remaining -= n

    async def check_parts_present(self, obj: StoredObject) -> None:
        def check() -> str | None:
            for p in obj.parts:
                try:
                    if os.stat(obj.slot_dir / p.local_path).st_size != p.size_bytes:
                        return f"part file {p.local_path} has the wrong size"
                except FileNotFoundError:
                    return f"part file {p.local_path} is missing"
            return None

        problem = await self._thread(check)
        if problem is not None:
            raise StorageCorrupt(problem)

    async def list_heads(
        self, prefix: str, after: str | None, limit: int, include_deleted: bool
    ) -> list[Head]:
        """Current heads across every slot on this node, sorted by path."""

        def scan() -> list[Head]:
            found: list[Head] = []
            for slot in sorted(self._slot_dirs):
                with self._cache.acquire(slot) as meta:
                    found.extend(meta.list_current(prefix, after, limit, include_deleted))
                # keep only the `limit` smallest so far: memory stays bounded
                if len(found) > limit:
                    found.sort(key=lambda h: h.path)
                    del found[limit:]
            found.sort(key=lambda h: h.path)
            return found[:limit]

        return await self._thread(scan)

    # -- writes -----------------------------------------------------------------

    async def begin_write(self, slot: int, path: str, now: float) -> WriteSession:
        """Start writing the next generation of `path` on this node."""
        blob_dir = "/".join(["blobs", *disk_segments(path)])
        pending = await self._with_slot(slot, SlotMeta.begin_pending, path, blob_dir, now)
        writer = ObjectWriter(self.slot_dir(slot), pending.gen_dir, self.part_size,
                              hash_object=False)
        return WriteSession(self, slot, pending, writer)

    def meta_head(self, slot: int, path: str, generation: int, write_id: str,
                  parts: Sequence[PartRecord], etag: str, size: int, now: float) -> Head:
        """The head that makes a just-written object visible."""
        return Head(kind="meta", path=path, slot_id=slot, generation=generation,
                    write_id=write_id, size_bytes=size, etag=etag, part_size=self.part_size,
                    part_count=len(parts), timestamp=now)

    async def write_small(
        self,
        slot: int,
        path: str,
        data: bytes,
        *,
        write_id: str,
        now: float,
        precondition: Precondition | None,
        result_for: Callable[[Head], dict[str, Any]],
    ) -> tuple[CommitOutcome, dict[str, Any] | None]:
        """A whole small object in one worker-thread call (one hop, not five).

        Same steps and crash safety as the streaming path: write-id replay,
        precondition, pending marker, durable parts, atomic head commit. The
        outcome comes with the result to report (the first one for a replay).
        """
        blob_dir = "/".join(["blobs", *disk_segments(path)])

        def run() -> tuple[CommitOutcome, dict[str, Any] | None]:
            with self._cache.acquire(slot) as meta:
                if write_id:
                    first = meta.write_result(path, write_id)
                    if first is not None:
                        return CommitOutcome.REPLAY, first
                if precondition is not None and not precondition.holds(meta.current_head(path)):
                    return CommitOutcome.PRECONDITION_FAILED, None
                pending = meta.begin_pending(path, blob_dir, now)
                writer = ObjectWriter(self.slot_dir(slot), pending.gen_dir, self.part_size)
                try:
                    writer.write(data)
                    parts, etag, size = writer.finish()
                    head = self.meta_head(slot, path, pending.generation, write_id, parts,
                                          etag, size, now)
                    result = result_for(head)
                    outcome, first = meta.commit(head, parts, now=now, pending_id=pending.id,
                                                 precondition=precondition, result=result)
                except BaseException:
                    writer.abort()
                    meta.drop_pending(pending.id)
                    raise
                if outcome is not CommitOutcome.APPLIED:
                    writer.abort()
                    meta.drop_pending(pending.id)
                return outcome, first if outcome is CommitOutcome.REPLAY else result

        try:
            return await self._thread(run)
        except OSError as exc:
            raise _disk_error(exc) from None

    async def read_small(self, slot: int, path: str,
                         max_bytes: int) -> tuple[StoredObject | None, bytes | None]:
        """The current object and, when it is at most `max_bytes`, its bytes (one hop)."""

        def run() -> tuple[StoredObject | None, bytes | None]:
            with self._cache.acquire(slot) as meta:
                head = meta.current_head(path)
                if head is None:
                    return None, None
                parts = tuple(meta.parts_of(head)) if head.kind == "meta" else ()
            obj = StoredObject(head, parts, self.slot_dir(slot))
            if head.deleted or head.size_bytes > max_bytes or len(parts) != head.part_count:
                return obj, None
            chunks = []
            for p in parts:
                try:
                    with open(obj.slot_dir / p.local_path, "rb") as f:
                        chunk = f.read()
                except FileNotFoundError:
                    raise StorageCorrupt(f"part file {p.local_path} is missing") from None
                if len(chunk) != p.size_bytes:
                    raise StorageCorrupt(f"part file {p.local_path} has the wrong size")
                chunks.append(chunk)
            return obj, b"".join(chunks)

        obj, data = await self._thread(run)
        if obj is not None and len(obj.parts) != obj.head.part_count:
            raise StorageCorrupt(f"{path}: head names {obj.head.part_count} parts, "
                                 f"{len(obj.parts)} are recorded")
        return obj, data

    async def commit(
        self,
        slot: int,
        head: Head,
        parts: Sequence[PartRecord],
        *,
        now: float,
        pending_id: int | None = None,
        precondition: Precondition | None = None,
        result: dict[str, Any] | None = None,
    ) -> tuple[CommitOutcome, dict[str, Any] | None]:
        def do(meta: SlotMeta) -> tuple[CommitOutcome, dict[str, Any] | None]:
            return meta.commit(head, parts, now=now, pending_id=pending_id,
                               precondition=precondition, result=result)

        return await self._with_slot(slot, do)

    async def drop_pending(self, slot: int, pending_id: int) -> None:
        await self._with_slot(slot, SlotMeta.drop_pending, pending_id)

    def _discard_pending_sync(self, slot: int, meta: SlotMeta, pending: PendingWrite) -> None:
        """Remove the files of an interrupted write that no committed head uses."""
        slot_dir = self.slot_dir(slot)
        gen_dir = slot_dir / pending.gen_dir
        keep = meta.referenced_files(pending.path, pending.generation)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(gen_dir):
                rel = f"{pending.gen_dir}/{entry.name}"
                if entry.is_file() and rel not in keep:
                    os.unlink(entry.path)
        prune_empty_dirs(gen_dir, slot_dir)
        meta.drop_pending(pending.id)

    # -- garbage ----------------------------------------------------------------

    async def collect_garbage(self, cutoff: float, batch: int = 256) -> int:
        """Remove superseded heads (and their parts) older than `cutoff`."""
        removed = 0
        for slot in sorted(self._slot_dirs):

            def sweep(slot: int = slot) -> int:
                with self._cache.acquire(slot) as meta:
                    victims = meta.superseded_before(cutoff, batch)
                    files: list[str] = []
                    for path, gen, sha in victims:
                        files.extend(meta.forget_head(path, gen, sha))
                remove_files(self.slot_dir(slot), files)
                return len(victims)

            removed += await self._thread(sweep)
        return removed


class WriteSession:
    """One object being written into one slot; commit or abort it exactly once."""

    def __init__(self, store: LocalStore, slot: int, pending: PendingWrite,
                 writer: ObjectWriter) -> None:
        self._store = store
        self.slot = slot
        self.pending_id = pending.id
        self.generation = pending.generation
        self._writer = writer
        self._object_hash = hashlib.sha256()

    @property
    def size(self) -> int:
        return self._writer.size

    async def write(self, data: bytes | bytearray) -> None:
        """Write a batch; the object's hash runs beside the part write, on
        another worker thread (hashlib releases the GIL), so each byte is
        hashed twice in the time of once."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._store._thread, self._object_hash.update, data)
                await self._store._thread(self._writer.write, data)
        except OSError as exc:
            raise _disk_error(exc) from None

    async def finish(self) -> tuple[list[PartRecord], str, int]:
        try:
            parts, _, size = await self._store._thread(self._writer.finish)
        except OSError as exc:
            raise _disk_error(exc) from None
        return parts, self._object_hash.hexdigest(), size

    async def abort(self) -> None:
        """Remove what this write put on disk; runs even when cancelled."""
        with trio.CancelScope(shield=True):
            await self._store._thread(self._writer.abort)
            await self._store.drop_pending(self.slot, self.pending_id)


def _disk_error(exc: OSError) -> RimioError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the disk is full")
    return DiskError(f"disk error: {exc.strerror or exc}")
