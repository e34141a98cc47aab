"""`LocalStore`: the node's disks seen from trio.

Owns the slot directories on the configured disks, the group metadata
databases of each disk (storage/meta.py: one per `GROUPS` slots, all kept
open; per-slot databases of the previous layout are migrated into them at
start, storage/migrate.py), the worker-thread limiter through which every
blocking call goes, how the steps of a write (storage/writes.py) are spread
over worker threads, which objects are small enough to live inline in their
slot's SQLite row, whether new part files are compressed, the read cache of
current heads and small objects' bytes (invisible above this class: every
change of a head is bracketed by `ReadCache.writing`, and a hit needs no
worker thread), start-up recovery of
interrupted writes, and garbage collection (storage/gc.py: superseded
generations, orphan files, the unlink journal, write results; the heads
a read is streaming hold a lease it respects).
Nothing here knows about HTTP or about other nodes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import trio

from rimio.core.digest import HeadKey, SlotDigest
from rimio.core.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    DiskError,
    InsufficientStorage,
    PartCorrupt,
    PayloadTooLarge,
    RimioError,
    StorageCorrupt,
)
from rimio.core.head import Head
from rimio.core.parts import spans_for_range
from rimio.core.replica import PartInfo, PartMissing
from rimio.core.scrub import PartCheck
from rimio.core.writes import CommitOutcome, Precondition, WriteReport
from rimio.storage.cache import (
    DEFAULT_READ_CACHE_BYTES,
    DEFAULT_READ_CACHE_MAX_OBJECT_BYTES,
    CachedObject,
    ReadCache,
    ReadCacheStats,
)
from rimio.storage.compression import DEFAULT_LEVEL, NONE, CompressionPolicy, PartReader, read_part
from rimio.storage.contact import read_contact, write_contact
from rimio.storage.disk import check_disk_usable
from rimio.storage.gc import Collector, GcPolicy, HeadId, ReadLeases
from rimio.storage.meta import (
    GROUPS,
    META_DIR,
    GroupMeta,
    PendingWrite,
    SlotMeta,
    group_file,
    slot_dirs,
)
from rimio.storage.migrate import has_legacy, migrate_slot
from rimio.storage.parts import (
    DURABLE_DIRS,
    TEMP_PREFIX,
    Chunks,
    PartRecord,
    chunks_of,
    ensure_dir,
    prune_empty_dirs,
)
from rimio.storage.restore import RestoreFile, clear_restoring
from rimio.storage.scrub_position import load_position, save_position
from rimio.storage.slot_cache import SlotCache, SlotCacheStats
from rimio.storage.verify import (
    VERIFY_BUFFER_BYTES,
    VerifyCounters,
    VerifyStats,
    quarantine_bytes,
    quarantine_file,
    sha256_of,
)
from rimio.storage.writes import TOMBSTONE, Content, LocalWrite, ResultFor, Tombstone

log = logging.getLogger("rimio.storage")

T = TypeVar("T")
P = ParamSpec("P")

READ_CHUNK = 1024 * 1024
# How often the background evictor trims the slot cache back to its bound.
EVICT_INTERVAL = 0.2
# Objects up to this size (in hand, not streamed) live in their slot's SQLite
# row instead of a part file; measured in rfcs/0008-inline-small-objects.md.
DEFAULT_INLINE_MAX_BYTES = 64 * 1024
# The largest inline limit accepted: an inline object is held in memory whole.
MAX_INLINE_MAX_BYTES = 1024 * 1024
# Metadata databases kept open by default: all `GROUPS` of up to eight disks;
# see rfcs/0010 for the RSS each costs.
DEFAULT_MAX_OPEN_SLOTS = 512


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A committed head with the parts that hold its bytes (files, or inline rows)."""

    head: Head
    parts: tuple[PartRecord, ...]
    slot_dir: Path


class LocalStore:
    """The node's disks. `inline_max_bytes`: objects up to this size (capped at
    `part_size`, so an inline object is one part) are stored in their slot's
    SQLite row; 0 stores every object in part files. `read_cache_bytes`: the
    memory kept for the bytes of small hot objects (0: no cache), each at most
    `read_cache_max_object_bytes`. `compression` 'zstd' compresses new part
    files that the probe finds compressible, at `compression_level`; 'none'
    (the default) writes them as they are. Parts are read whatever the setting.
    `verify_reads`: every part read is checked against its sha256 (storage/
    verify.py); False only to measure what the check costs."""

    def __init__(
        self, disks: Sequence[Path], *, total_slots: int, part_size: int, io_threads: int = 8,
        max_open_slots: int = DEFAULT_MAX_OPEN_SLOTS,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
        read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES,
        read_cache_max_object_bytes: int = DEFAULT_READ_CACHE_MAX_OBJECT_BYTES,
        compression: str = NONE,
        compression_level: int = DEFAULT_LEVEL,
        inline_io: bool = False,
        verify_reads: bool = True,
    ) -> None:
        if not disks:
            raise ConfigError("a node needs at least one disk")
        if not 0 <= inline_max_bytes <= MAX_INLINE_MAX_BYTES:
            raise ConfigError(f"inline_max_bytes must be between 0 and {MAX_INLINE_MAX_BYTES}")
        self._disks = [Path(d) for d in disks]
        self.total_slots = total_slots
        self.part_size = part_size
        self.inline_max_bytes = min(inline_max_bytes, part_size)
        self.compression = CompressionPolicy(compression, compression_level)
        self.read_cache = ReadCache(read_cache_bytes, read_cache_max_object_bytes)
        self.verify_reads = verify_reads
        self._verify = VerifyCounters()
        self._limiter = trio.CapacityLimiter(io_threads)
        self._slot_dirs: dict[int, Path] = {}
        # `max_open_slots` bounds the open metadata databases (groups, not slots).
        self._cache = SlotCache(self.group_path, max_open=max_open_slots)
        self.recovered_writes = 0
        self.finished_drops = 0  # slots whose files an interrupted drop left, removed at start
        # (slot, path, generation) → part uploads in flight (their marker must stay).
        self._uploading: dict[tuple[int, str, int], int] = {}
        self.migrated_slots = 0  # per-slot databases folded into their group at start
        # Deterministic simulation only (`rimio.testing.chaos`): a worker thread
        # lets MockClock's autojump fire while it works, so timing would depend
        # on the host; inline, the disk work runs on the trio thread.
        self._inline_io = inline_io
        self.on_applied: Callable[[int, str, int], None] | None = None
        """Observer of every head this store commits: `(slot, path, generation)`."""
        self._leases = ReadLeases()
        self._gc = Collector(self._cache, self._disks, self._leases, self._thread,
                             self._forgotten)

    @property
    def slot_stats(self) -> SlotCacheStats:
        """How often metadata databases were opened, created and evicted so far."""
        return self._cache.stats()

    @property
    def verify_stats(self) -> VerifyStats:
        """Parts checked on read so far, and those that failed (quarantined)."""
        return self._verify.snapshot()

    @property
    def read_cache_stats(self) -> ReadCacheStats:
        """Hits, misses and the size of the read cache so far."""
        return self.read_cache.stats()

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
                ensure_dir(disk / META_DIR)
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
            clear_restoring(disk)  # restores a crash cut short (RFC 0017)
            for slot, slot_dir in slot_dirs(disk):
                if slot < self.total_slots and slot not in self._slot_dirs:
                    self._slot_dirs[slot] = slot_dir
        for slot, slot_dir in sorted(self._slot_dirs.items()):
            if has_legacy(slot_dir):
                with self._cache.acquire_group(self.group_path(slot)) as group:
                    self.migrated_slots += migrate_slot(group, slot, slot_dir, time.time())
        # Every group database is opened now: interrupted writes (migrated ones
        # too) are cleaned up before the node serves, and a slot whose rows are
        # here but whose directory is gone (no part files left) stays on this disk.
        for disk in self._disks:
            for path in sorted((disk / META_DIR).glob("group-*.sqlite3")):
                number = path.name[len("group-"):-len(".sqlite3")]
                if not (number.isdigit() and int(number) < GROUPS):
                    continue
                with self._cache.acquire_group(path) as group:
                    for slot in group.slots():
                        if slot < self.total_slots and slot not in self._slot_dirs:
                            self._slot_dirs[slot] = disk / "slots" / str(slot)
                    self._recover_group(disk, group)
                # Files a collection journaled but did not unlink (a crash).
                replayed = self._gc.finish_journal_sync(path)
                self._gc.counters.journal_replayed += replayed
        self._finish_drops()

    async def close(self) -> None:
        await self._thread(self._cache.close_all)

    # -- plumbing ---------------------------------------------------------------

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread. The storage boundary: SQLite and OS
        errors leave as the storage error they mean (a missing file passes
        through, for the caller to call it corruption)."""
        try:
            if self._inline_io:
                await trio.lowlevel.checkpoint()
                return fn(*args)
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug of ours, not of the disk
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _disk_error(exc) from exc

    def slot_dir(self, slot: int) -> Path:
        known = self._slot_dirs.get(slot)
        if known is not None:
            return known
        return self._disks[slot % len(self._disks)] / "slots" / str(slot)

    def group_path(self, slot: int) -> Path:
        """The metadata database of `slot`: a group file on the disk of its directory.
        The directory itself is made by the first part file written into it."""
        return group_file(self.slot_dir(slot).parent.parent, slot)

    def _recover_group(self, disk: Path, group: GroupMeta) -> None:
        # A group's rows name files on its own disk.
        for slot, pending in group.pending():
            self._discard_pending_sync(disk / "slots" / str(slot), group.slot(slot), pending)
            self.recovered_writes += 1

    async def _with_slot(self, slot: int, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(meta, *args)` in a worker thread, holding the slot."""

        def locked() -> T:
            with self._cache.acquire(slot) as meta:
                return fn(meta, *args)

        return await self._thread(locked)

    async def run_evictor(self, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Close surplus metadata databases in the background, off the request path."""
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
        """Yield bytes `[start, end]` of a stored object in chunks of at most 1 MiB.

        The head holds a read lease while it streams: garbage collection
        leaves its rows and files alone however long the read takes, and
        each part file is opened once (an unlink meanwhile does not cut it)."""
        parts = {p.index: p for p in obj.parts}
        head = obj.head
        with self._leases.hold((head.slot_id, head.path, head.generation, head.sha256)):
            for span in spans_for_range(start, end, head.part_size):
                part = parts[span.index]
                if part.local_path is None:
                    yield await self._inline_range(obj, part, span.offset, span.length)
                    continue
                async for data in self._part_file_range(
                        head.slot_id, head.path, obj.slot_dir, part, span.offset,
                        span.length, StorageCorrupt, f"part file {part.local_path}"):
                    yield data

    async def _part_file_range(self, slot: int, path: str, slot_dir: Path, part: PartRecord,
                               offset: int, length: int, fault: type[RimioError], name: str
                               ) -> AsyncGenerator[bytes, None]:
        """`length` bytes of a part file from `offset` (decompressed), in
        chunks of at most READ_CHUNK, checked against the part's sha256
        (rfcs/0013): the whole part is read and hashed, whatever the range.
        A part up to VERIFY_BUFFER_BYTES is checked before its first byte is
        yielded; a larger one while it streams, its last chunk held back until
        the check passed. A part that fails is quarantined and PartCorrupt
        raised. A file that is not there or ends early raises `fault` ("<name>
        is missing" / "... is truncated"): a local read's StorageCorrupt, a
        replica read's PartMissing."""
        assert part.local_path is not None
        file = slot_dir / part.local_path
        if not self.verify_reads:
            start, size = offset, length
        else:
            start, size = 0, part.size_bytes
        try:
            reader = await self._thread(PartReader, file, part.compression, start)
        except FileNotFoundError:
            raise fault(f"{name} is missing") from None
        try:
            if not self.verify_reads:
                remaining = length
                while remaining > 0:
                    n = min(READ_CHUNK, remaining)
                    data = await self._thread(reader.read, n)
                    if len(data) != n:
                        raise fault(f"{name} is truncated")
                    yield data
                    remaining -= n
                return
            if size <= VERIFY_BUFFER_BYTES:
                whole = await self._thread(reader.read, size)
                if len(whole) != size:
                    raise fault(f"{name} is truncated")
                if sha256_of(whole) != part.sha256:
                    raise await self._thread(self._corrupt_file, slot, path, slot_dir, part)
                self._verify.verified()
                if offset == 0 and length == size <= READ_CHUNK:
                    yield whole  # the whole part in one chunk: no copy
                    return
                view = memoryview(whole)
                for at in range(offset, offset + length, READ_CHUNK):
                    yield bytes(view[at:min(at + READ_CHUNK, offset + length)])
                return
            digest = hashlib.sha256()
            held: bytes | None = None  # the last chunk of the range: out after the check
            pos, end = 0, offset + length
            while pos < size:
                n = min(READ_CHUNK, size - pos)
                data = await self._thread(_read_hashed, reader, digest, n)
                if len(data) != n:
                    raise fault(f"{name} is truncated")
                lo, hi = max(offset, pos), min(end, pos + n)
                if lo < hi:
                    if held is not None:
                        yield held
                    held = data if (lo, hi) == (pos, pos + n) else data[lo - pos:hi - pos]
                pos += n
            if digest.hexdigest() != part.sha256:
                raise await self._thread(self._corrupt_file, slot, path, slot_dir, part)
            self._verify.verified()
            if held is not None:
                yield held
        finally:
            reader.close()

    def _corrupt_file(self, slot: int, path: str, slot_dir: Path,
                      part: PartRecord) -> PartCorrupt:
        """Quarantine a part file that failed its check (in a worker thread);
        the error to raise."""
        assert part.local_path is not None
        try:
            target = quarantine_file(slot_dir, slot, part.local_path)
        except OSError as exc:
            target = None
            log.error("part %d of %s (slot %d, %s) failed its sha256 check and could not "
                      "be quarantined: %s", part.index, path, slot, part.local_path, exc)
        self._verify.failed(target is not None)
        if target is not None:
            log.error("part %d of %s (slot %d, %s) failed its sha256 check: moved to %s",
                      part.index, path, slot, part.local_path, target)
        return PartCorrupt(f"{path}: part {part.index} failed its sha256 check")

    def _check_inline(self, slot: int, path: str, generation: int, head_sha256: str,
                      part: PartRecord, data: bytes) -> None:
        """Check an inline part's bytes (in a worker thread, not holding the
        slot); on a mismatch, keep a copy in the quarantine, mark the part
        missing in its row and raise PartCorrupt."""
        if not self.verify_reads:
            return
        if sha256_of(data) == part.sha256:
            self._verify.verified()
            return
        raise self._inline_failed(slot, path, generation, head_sha256, part, data)

    def _inline_failed(self, slot: int, path: str, generation: int, head_sha256: str,
                       part: PartRecord, data: bytes) -> PartCorrupt:
        """Quarantine an inline part that failed its check (a copy of its
        bytes; the row marked missing); the error to raise."""
        slot_dir = self.slot_dir(slot)
        name = f"{path.replace('/', '%2F')}.g{generation}.part{part.index}.{part.sha256}"
        target: Path | None = None
        try:
            target = quarantine_bytes(slot_dir, slot, name, data)
            with self._cache.acquire(slot) as meta:
                meta.set_inline(path, generation, head_sha256, part.index, part.sha256, None)
        except OSError as exc:
            log.error("inline part %d of %s (slot %d) failed its sha256 check and could not "
                      "be quarantined: %s", part.index, path, slot, exc)
        self._verify.failed(target is not None)
        self.read_cache.invalidate(slot, path, head_sha256)
        if target is not None:
            log.error("inline part %d of %s (slot %d) failed its sha256 check: copied to %s",
                      part.index, path, slot, target)
        return PartCorrupt(f"{path}: inline part {part.index} failed its sha256 check")

    async def _inline_range(self, obj: StoredObject, part: PartRecord, offset: int,
                            length: int) -> bytes:
        # The whole part (inline ones are small) so that it can be checked.
        if part.data is not None:
            data: bytes | None = part.data
        else:
            data = await self._with_slot(obj.head.slot_id, SlotMeta.inline_range, obj.head,
                                         part.index, 0, part.size_bytes)
        if data is None:
            raise StorageCorrupt(f"{obj.head.path}: inline part {part.index} is missing")
        if len(data) != part.size_bytes:
            raise StorageCorrupt(f"{obj.head.path}: inline part {part.index} is truncated")
        if part.data is None:
            # (bytes that came with the part record were checked when loaded)
            head = obj.head
            await self._thread(self._check_inline, head.slot_id, head.path, head.generation,
                               head.sha256, part, data)
        return data[offset:offset + length]

    async def check_parts_present(self, obj: StoredObject) -> None:
        def check() -> str | None:
            for p in obj.parts:
                if p.local_path is None:
                    continue  # inline: its bytes are in the row that names it
                try:
                    if os.stat(obj.slot_dir / p.local_path).st_size != p.file_bytes:
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
        """Current heads across every slot on this node, sorted by path: the
        first `limit` of each group database, merged."""

        def scan() -> list[Head]:
            found: list[Head] = []
            for path in self._cache.groups():
                with self._cache.acquire_group(path) as group:
                    found.extend(group.list_current(prefix, after, limit, include_deleted))
                # keep only the `limit` smallest so far: memory stays bounded
                if len(found) > limit:
                    found.sort(key=lambda h: h.path)
                    del found[limit:]
            found.sort(key=lambda h: h.path)
            return found[:limit]

        return await self._thread(scan)

    # -- writes -----------------------------------------------------------------

    async def write(
        self,
        slot: int,
        path: str,
        content: Content,
        *,
        write_id: str,
        clock: Callable[[], float],
        precondition: Precondition | None,
        result_for: ResultFor,
        generation: int | None = None,
    ) -> WriteReport:
        """Write `content` as the next head of `path` (the local write sequence).

        `content` is the whole object in hand (bytes), its batches as they
        arrive (an async iterable; each batch is written while the next is
        received), or `TOMBSTONE`. `result_for` builds the answer recorded for
        `write_id` from the head about to commit. `generation` is chosen here
        unless given (a replica applying a coordinator's write gives it).
        `clock` gives the time of the pending marker and of the head.

        Bytes and tombstones take one worker-thread call; a stream takes one to
        start, its part writes, and one to commit. Bytes up to
        `inline_max_bytes` and tombstones are one SQLite transaction and no
        file. The report says what happened; nothing is left behind unless
        the head was applied.
        """
        tombstone = content is TOMBSTONE
        streamed = not tombstone and not isinstance(content, bytes)
        # Inline only what is in hand: a stream's size is known at its end.
        in_row = isinstance(content, bytes) and len(content) <= self.inline_max_bytes
        seq = LocalWrite(slot, path, self.slot_dir(slot), self.part_size, tombstone=tombstone,
                         write_id=write_id, precondition=precondition, result_for=result_for,
                         generation=generation, hash_object=not streamed, in_row=in_row,
                         compression=self.compression)
        # Every change of a current head is bracketed so (storage/cache.py).
        with self.read_cache.writing(slot, path):
            if isinstance(content, bytes):
                step = _on_disk(self._remembered(seq, seq.run, content))
                report = await self._with_slot(slot, step, content, clock())
            elif isinstance(content, Tombstone):
                step = _on_disk(self._remembered(seq, seq.run, None))
                report = await self._with_slot(slot, step, None, clock())
            else:
                report = await self._write_stream(seq, content, clock)
            if (self.on_applied is not None and report.outcome is CommitOutcome.APPLIED
                    and report.result is not None):
                self.on_applied(slot, path, int(report.result["generation"]))
            return report

    def _remembered(self, seq: LocalWrite, step: Callable[..., WriteReport],
                    data: bytes | None) -> Callable[..., WriteReport]:
        """`step(meta, ...)`, a step that commits, then the read cache told
        what it applied, under the same hold of the slot (so the cache sees
        the commits of a path in their order). `data` is the content, if in hand."""

        def run(meta: SlotMeta, *args: Any) -> WriteReport:
            try:
                report = step(meta, *args)
            except BaseException:
                self.read_cache.committed(seq.slot, seq.path, None, (), None)
                raise
            if seq.applied is None:
                self.read_cache.committed(seq.slot, seq.path, None, (), None)
            else:
                head, parts = seq.applied
                self.read_cache.committed(seq.slot, seq.path, head, parts, data)
            return report

        return run

    async def _write_stream(self, seq: LocalWrite, batches: AsyncIterable[Chunks],
                            clock: Callable[[], float]) -> WriteReport:
        early = await self._with_slot(seq.slot, _on_disk(seq.admit), clock())
        if early is not None:
            return early
        object_hash = hashlib.sha256()
        try:
            await self._pump(batches, seq, object_hash)
            parts, _, size = await self._thread(_on_disk(seq.seal))
            report = await self._with_slot(seq.slot, _on_disk(self._remembered(seq, seq.commit,
                                                                                None)),
                                           parts, object_hash.hexdigest(), size, clock())
        except BaseException:
            await self._abort(seq)
            raise
        if report.outcome is not CommitOutcome.APPLIED:
            await self._abort(seq)
        return report

    async def _pump(self, batches: AsyncIterable[Chunks], seq: LocalWrite,
                    object_hash: hashlib._Hash) -> None:
        """Receive the next batch while the previous one is written, and seal
        each full part while the next batches are written.

        A batch is cut into pieces per part; then three worker threads run at
        once (hashlib and os.write let each other run): the object hash, the
        part hashes and the part file writes. A part whose bytes are all
        written and hashed goes to the sealer (fsync, rename) and the next
        batch starts meanwhile. At most three batches (receiving, queued,
        writing) and two unsealed full parts are in flight. The head still
        commits only after every part is sealed and the directory fsynced
        (`seal` in `_write_stream`)."""
        send, receive = trio.open_memory_channel[Chunks](1)
        to_seal, sealing = trio.open_memory_channel[int](1)
        writer = seq.writer

        async def produce() -> None:
            async with send:
                async for batch in batches:
                    await send.send(batch)

        async def consume() -> None:
            async with receive, to_seal:
                async for batch in receive:
                    pieces = writer.cut(batch)
                    await _together(partial(self._thread, _hash_chunks, object_hash, batch),
                                    partial(self._thread, writer.hash_pieces, pieces),
                                    partial(self._thread, _on_disk(writer.write_pieces), pieces))
                    for index in writer.full_parts(pieces):
                        await to_seal.send(index)

        async def seal() -> None:
            async with sealing:
                async for index in sealing:
                    await self._thread(_on_disk(writer.seal), index)

        await _together(produce, consume, seal)

    async def _abort(self, seq: LocalWrite) -> None:
        """Files first, then the marker; runs even when cancelled."""
        with trio.CancelScope(shield=True):
            await self._thread(seq.remove_files)
            await self._with_slot(seq.slot, seq.drop_pending)

    async def read_small(self, slot: int, path: str,
                         max_bytes: int) -> tuple[StoredObject | None, bytes | None]:
        """The current object and, when it is at most `max_bytes`, its bytes.

        From the read cache when it holds the path (no worker-thread hop, no
        SQLite read: the node owns its disks, see storage/cache.py), else in
        one worker-thread call that also fills the cache."""
        cached = self.read_cache.lookup(slot, path, max_bytes)
        if cached is not None:
            return self._from_cache(slot, cached, max_bytes)

        def run() -> tuple[StoredObject | None, bytes | None]:
            fill = self.read_cache.begin_fill(slot, path)
            head: Head | None = None
            parts: tuple[PartRecord, ...] = ()
            data: bytes | None = None
            try:
                with self._cache.acquire(slot) as meta:
                    head = meta.current_head(path)
                    if head is None:
                        return None, None
                    wanted = not head.deleted and head.size_bytes <= max_bytes
                    parts = (tuple(meta.parts_of(head, with_data=wanted)) if head.kind == "meta"
                             else ())
                obj = StoredObject(head, parts, self.slot_dir(slot))
                if not wanted or len(parts) != head.part_count:
                    return obj, None
                data = b"".join(self._part_bytes(obj, p) for p in parts)
                return obj, data
            finally:
                if len(parts) != (0 if head is None else head.part_count):
                    head = None  # not kept: the read below reports it as corrupt
                self.read_cache.finish_fill(fill, head, parts, data)

        obj, data = await self._thread(run)
        if obj is not None and len(obj.parts) != obj.head.part_count:
            raise StorageCorrupt(f"{path}: head names {obj.head.part_count} parts, "
                                 f"{len(obj.parts)} are recorded")
        return obj, data

    def _from_cache(self, slot: int, cached: CachedObject,
                    max_bytes: int) -> tuple[StoredObject, bytes | None]:
        head = cached.head
        if head.deleted or head.size_bytes > max_bytes or cached.data is None:
            return StoredObject(head, cached.parts, self.slot_dir(slot)), None
        return (StoredObject(head, _inline_loaded(cached.parts, cached.data, head.part_size),
                             self.slot_dir(slot)), cached.data)

    def _part_bytes(self, obj: StoredObject, p: PartRecord) -> bytes:
        """The whole content of one part (in a worker thread), checked against
        its size and its sha256 (before anything of it is served or cached)."""
        if p.local_path is None:
            if p.data is None or len(p.data) != p.size_bytes:
                raise StorageCorrupt(f"{obj.head.path}: inline part {p.index} has the wrong size")
            head = obj.head
            self._check_inline(head.slot_id, head.path, head.generation, head.sha256, p, p.data)
            return p.data
        try:
            chunk = read_part(obj.slot_dir / p.local_path, p.compression)
        except FileNotFoundError:
            raise StorageCorrupt(f"part file {p.local_path} is missing") from None
        if len(chunk) != p.size_bytes:
            raise StorageCorrupt(f"part file {p.local_path} has the wrong size")
        if self.verify_reads:
            if sha256_of(chunk) != p.sha256:
                raise self._corrupt_file(obj.head.slot_id, obj.head.path, obj.slot_dir, p)
            self._verify.verified()
        return chunk

    def _discard_pending_sync(self, slot_dir: Path, meta: SlotMeta,
                              pending: PendingWrite) -> None:
        """Remove the files of an interrupted write that no committed head uses."""
        gen_dir = slot_dir / pending.gen_dir
        keep = meta.referenced_files(pending.path, pending.generation)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(gen_dir):
                rel = f"{pending.gen_dir}/{entry.name}"
                if entry.is_file() and rel not in keep:
                    os.unlink(entry.path)
        prune_empty_dirs(gen_dir, slot_dir)
        # The uploads of a replica's write name the files just removed; the
        # marker goes last, so a crash before it repeats all of this.
        meta.drop_uploads(pending.path, pending.generation)
        meta.drop_pending(pending.id)

    # -- garbage ----------------------------------------------------------------

    async def collect_garbage(self, cutoff: float, batch: int = 256) -> int:
        """Remove superseded heads (and their parts) superseded before the
        wall time `cutoff`, with no check on the monotonic clock (the node
        runs `gc_sweep`). The heads removed."""
        removed = 0
        for group_path in self._cache.groups():
            removed += await self._gc.collect_superseded(group_path, cutoff, batch, None)
            await self._gc.finish_journal(group_path, None, trio.current_time)
        return removed

    async def gc_sweep(self, policy: GcPolicy, *, wall: Callable[[], float],
                       mono: Callable[[], float]) -> int:
        """One garbage collection sweep (storage/gc.py, rfcs/0016): superseded
        heads, the unlink journal, orphan files and empty directories, expired
        write results. `wall` and `mono` are the wall and monotonic clocks.
        The files unlinked."""
        return await self._gc.sweep(policy, wall=wall, mono=mono)

    def gc_stats(self) -> dict[str, int | float]:
        """Counters of garbage collection since start, for a status endpoint:
        superseded_removed, orphans_removed, files_unlinked, bytes_freed,
        write_results_expired, journal_replayed, orphans_watched, sweeps,
        last_sweep (wall seconds; 0 before the first sweep)."""
        return self._gc.stats()

    def _forgotten(self, head: HeadId) -> None:
        # Only current heads are cached; this is a safety net.
        slot, path, _, sha = head
        self.read_cache.invalidate(slot, path, sha)

    # -- a replica's side of the replica protocol (RFC 0011 §5) ------------------
    #
    # The steps are those of `LocalWrite` (storage/writes.py), spread over
    # requests: a part upload per request, then the head.

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes], *, clock: Callable[[], float]
                       ) -> PartRecord:
        """Store part `index` of the pending write of `path` at `generation`
        (at most `part_size` bytes, at least one), not yet visible. Repeating
        it is harmless: the same content lands on the same file."""
        seq = LocalWrite(slot, path, self.slot_dir(slot), self.part_size, tombstone=False,
                         write_id="", precondition=None, result_for=_no_result,
                         generation=generation, hash_object=False,
                         compression=self.compression, first_index=index)
        key = (slot, path, generation)

        def join(meta: SlotMeta, now: float) -> None:
            seq.join(meta, now)
            self._uploading[key] = self._uploading.get(key, 0) + 1

        def release(meta: SlotMeta, record: PartRecord | None, now: float) -> bool:
            left = self._uploading.get(key, 1) - 1
            if left:
                self._uploading[key] = left
            else:
                self._uploading.pop(key, None)
            return record is not None and seq.record_part(meta, record, now)

        await self._with_slot(slot, _on_disk(join), clock())
        released = False
        try:
            await self._pump_part(chunks, seq)
            records, _, _ = await self._thread(_on_disk(seq.seal))
            if not records:
                raise BadRequest("a part holds at least one byte")
            released = True
            if not await self._with_slot(slot, _on_disk(release), records[0], clock()):
                raise Conflict(f"the write of {path} at generation {generation} was aborted")
            return records[0]
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._thread(seq.remove_files)
                if not released:
                    await self._with_slot(slot, release, None, clock())
            raise

    async def _pump_part(self, batches: AsyncIterable[bytes], seq: LocalWrite) -> None:
        """Write one part's bytes as they arrive, gathered into batches of
        `READ_CHUNK` (fewer thread hops); the next batch is received while one
        is written. More than `part_size` bytes is refused."""
        send, receive = trio.open_memory_channel[bytes](1)
        limit = self.part_size

        async def produce() -> None:
            async with send:
                batch, received = bytearray(), 0
                async for chunk in batches:
                    received += len(chunk)
                    if received > limit:
                        raise PayloadTooLarge(f"a part is at most {limit} bytes")
                    batch += chunk
                    if len(batch) >= READ_CHUNK:
                        await send.send(bytes(batch))
                        batch = bytearray()
                if batch:
                    await send.send(bytes(batch))

        async def consume() -> None:
            async with receive:
                async for batch in receive:
                    await self._thread(_on_disk(seq.write), batch)

        await _together(produce, consume)

    async def apply_head(self, head: Head, parts: Sequence[PartInfo], inline: bytes | None,
                         write_result: dict[str, Any] | None, *, clock: Callable[[], float]
                         ) -> tuple[bool, Head | None]:
        """Make `head` current if it beats this node's head of its path by the
        head order, with the uploaded `parts` (or the `inline` bytes); record
        `write_result` for its write id unless one is. (applied, current head
        after). Raises PartMissing when a part it names is not here, whole."""
        slot = head.slot_id
        seq = LocalWrite(slot, head.path, self.slot_dir(slot), head.part_size or self.part_size,
                         tombstone=head.deleted, write_id=head.write_id, precondition=None,
                         result_for=_no_result, generation=head.generation)
        key = (slot, head.path, head.generation)

        def run(meta: SlotMeta, now: float) -> tuple[bool, Head | None]:
            # Read while holding the slot: uploads join (and count) under it too.
            return seq.apply(meta, head, parts, inline, write_result, now,
                             busy=key in self._uploading)

        # A change of the current head like any write's: reads in progress
        # must not cache what they read before it (RFC 0009).
        with self.read_cache.writing(slot, head.path):
            applied, current = await self._with_slot(slot, _on_disk(run), clock())
        if applied and self.on_applied is not None and current == head:
            self.on_applied(slot, head.path, head.generation)
        return applied, current

    async def abort_generation(self, slot: int, path: str, generation: int) -> None:
        """Remove what the uploads of the write of `path` at `generation` left:
        the files no head names first, then their rows and the marker."""

        def run(meta: SlotMeta) -> None:
            for pending in meta.pending_of(path, generation):
                self._discard_pending_sync(self.slot_dir(slot), meta, pending)

        with trio.CancelScope(shield=True):
            await self._with_slot(slot, _on_disk(run))

    async def head_and_result(self, slot: int, path: str,
                              write_id: str | None) -> tuple[Head | None, dict[str, Any] | None]:
        """The current head of `path` and the result recorded for `write_id`."""

        def run(meta: SlotMeta) -> tuple[Head | None, dict[str, Any] | None]:
            return (meta.current_head(path),
                    meta.write_result(path, write_id) if write_id else None)

        return await self._with_slot(slot, run)

    async def slot_heads(self, slot: int, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        """The current heads (tombstones included) of one slot, by path."""
        return await self._with_slot(slot, SlotMeta.list_current, prefix, after, limit, True)

    async def read_part(self, slot: int, path: str, generation: int, head_sha256: str,
                        index: int, start: int, end: int | None
                        ) -> AsyncGenerator[bytes, None]:
        """Bytes `start..end` (end exclusive; None: the end of the part) of
        part `index` of the stored head of `path` at `generation` with hash
        `head_sha256`, decompressed. PartMissing when this node does not hold
        that head's part whole."""
        with self._leases.hold((slot, path, generation, head_sha256)):  # (RFC 0016)
            async for chunk in self._read_part(slot, path, generation, head_sha256, index,
                                               start, end):
                yield chunk

    async def _read_part(self, slot: int, path: str, generation: int, head_sha256: str,
                         index: int, start: int, end: int | None
                         ) -> AsyncGenerator[bytes, None]:
        record = await self._with_slot(slot, SlotMeta.part_of, path, generation, head_sha256,
                                       index)
        if record is None:
            raise PartMissing(f"{path}: part {index} of this head is not here")
        if end is None:
            end = record.size_bytes
        if not 0 <= start <= end <= record.size_bytes:
            raise BadRequest(f"bytes {start}..{end} are not within part {index}")
        if record.local_path is None:
            data = record.data or b""
            if len(data) != record.size_bytes:
                raise PartMissing(f"{path}: inline part {index} is not whole")
            await self._thread(self._check_inline, slot, path, generation, head_sha256, record,
                               data)
            if end > start:
                yield data[start:end]
            return
        async for chunk in self._part_file_range(
                slot, path, self.slot_dir(slot), record, start, end - start, PartMissing,
                f"{path}: the file of part {index}"):
            yield chunk

    # -- scrub and restore (RFC 0017) ----------------------------------------------

    async def scrub_batch(self, slot: int, after: str | None,
                          limit: int) -> list[StoredObject]:
        """Up to `limit` current heads of `slot` after the path `after`, by
        path, with their part rows (tombstones too, without parts: the caller
        pages on). Inline parts come without their bytes."""
        slot_dir = self.slot_dir(slot)

        def run(meta: SlotMeta) -> list[StoredObject]:
            return [StoredObject(h, tuple(meta.parts_of(h)) if h.kind == "meta" else (),
                                 slot_dir)
                    for h in meta.list_current("", after, limit, True)]

        return await self._with_slot(slot, run)

    async def scrub_position(self) -> tuple[int, str | None] | None:
        """Where the scrub's interrupted pass was: (slot, last path done)."""
        return await self._thread(load_position, self._disks[0], self.total_slots)

    async def save_scrub_position(self, position: tuple[int, str | None] | None) -> None:
        """Remember where the scrub's pass is (None: it ended)."""
        await self._thread(_on_disk(save_position), self._disks[0], position)

    async def scrub_part(self, obj: StoredObject, part: PartRecord) -> PartCheck:
        """Read part `part` of `obj` whole and check it against its sha256
        (whatever `verify_reads` says). A part that fails is quarantined
        (rfcs/0013) and answered CORRUPT; a file or inline bytes not there,
        MISSING; a head no longer stored here, GONE."""
        return await self._thread(self._scrub_part_sync, obj, part)

    def _scrub_part_sync(self, obj: StoredObject, part: PartRecord) -> PartCheck:
        head = obj.head
        slot = head.slot_id

        def still_stored() -> PartRecord | None:
            with self._cache.acquire(slot) as meta:
                return meta.part_of(head.path, head.generation, head.sha256, part.index)

        # The row as it is now (a restore may have changed how the file is stored).
        record = still_stored()
        if record is None:
            return PartCheck.GONE
        part = record
        if part.local_path is None:
            if part.data is None:
                return PartCheck.MISSING
            if len(part.data) == part.size_bytes and sha256_of(part.data) == part.sha256:
                return PartCheck.GOOD
            self._inline_failed(slot, head.path, head.generation, head.sha256, part, part.data)
            return PartCheck.CORRUPT
        file = obj.slot_dir / part.local_path
        try:
            reader = PartReader(file, part.compression, 0)
        except FileNotFoundError:
            return PartCheck.GONE if still_stored() is None else PartCheck.MISSING
        digest, size, readable = hashlib.sha256(), 0, True
        try:
            while size <= part.size_bytes:
                data = reader.read(READ_CHUNK)
                if not data:
                    break
                digest.update(data)
                size += len(data)
        except StorageCorrupt:  # a frame zstd refuses: as bad as a wrong hash
            readable = False
        finally:
            reader.close()
        if readable and size == part.size_bytes and digest.hexdigest() == part.sha256:
            return PartCheck.GOOD
        if still_stored() is None:
            return PartCheck.GONE
        self._corrupt_file(slot, head.path, obj.slot_dir, part)
        return PartCheck.CORRUPT

    async def restore_part(self, slot: int, path: str, generation: int, head_sha256: str,
                           index: int, chunks: AsyncIterable[bytes]) -> PartRecord:
        """Put back part `index` of the stored head of `path` at `generation`
        with hash `head_sha256` from `chunks`, in place of a copy that was
        quarantined or lost: installed only if the bytes have the size and
        the sha256 the part's row gives (BadRequest otherwise, nothing
        changed); a part file through a temp file, fsync and rename
        (storage/restore.py), inline bytes into their row. PartMissing when
        that head is not stored here. Returns the part's record as it is now."""
        record = await self._with_slot(slot, SlotMeta.part_of, path, generation, head_sha256,
                                       index)
        if record is None:
            raise PartMissing(f"{path}: part {index} of this head is not here")

        def mismatch(what: str) -> BadRequest:
            return BadRequest(f"{path}: the bytes sent for part {index} {what}; "
                              "nothing was restored")

        if record.local_path is None:
            data = bytearray()
            async for chunk in chunks:
                data += chunk
                if len(data) > record.size_bytes:
                    raise mismatch("are more than the part holds")
            if len(data) != record.size_bytes or sha256_of(data) != record.sha256:
                raise mismatch("do not match its sha256")

            def put_inline(meta: SlotMeta) -> None:
                if meta.part_of(path, generation, head_sha256, index) is None:
                    raise PartMissing(f"{path}: part {index} of this head is not here")
                meta.set_inline(path, generation, head_sha256, index, record.sha256,
                                bytes(data))

            with self.read_cache.writing(slot, path):
                await self._with_slot(slot, _on_disk(put_inline))
            log.warning("inline part %d of %s (slot %d) restored", index, path, slot)
            return record

        local_path = record.local_path
        slot_dir = self.slot_dir(slot)
        restore = await self._thread(_on_disk(RestoreFile), slot_dir.parent.parent,
                                     record.size_bytes)
        try:
            batch = bytearray()
            async for chunk in chunks:
                batch += chunk
                if len(batch) >= READ_CHUNK:
                    if not await self._thread(_on_disk(restore.write), bytes(batch)):
                        raise mismatch("are more than the part holds")
                    batch = bytearray()
            if batch and not await self._thread(_on_disk(restore.write), bytes(batch)):
                raise mismatch("are more than the part holds")
            sha = await self._thread(_on_disk(restore.seal))
            if restore.size != record.size_bytes or sha != record.sha256:
                raise mismatch("do not match its sha256")

            def install(meta: SlotMeta) -> None:
                now = meta.part_of(path, generation, head_sha256, index)
                if now is None or now.local_path != local_path:
                    raise PartMissing(f"{path}: part {index} of this head is not here")
                restore.install(slot_dir / local_path)
                meta.set_part_storage(path, generation, local_path, None, None)

            # The read cache keeps part rows (how a file is stored): drop them.
            with self.read_cache.writing(slot, path):
                await self._with_slot(slot, _on_disk(install))
        finally:
            with trio.CancelScope(shield=True):
                await self._thread(restore.discard)
        log.warning("part %d of %s (slot %d) restored: %s", index, path, slot, local_path)
        return replace(record, compression=None, stored_bytes=None)

    # -- digests (RFC 0014) --------------------------------------------------------

    async def slot_tops(self) -> dict[int, bytes]:
        """The digest of every slot with heads on this node: one query per
        group database (a slot not in the answer has none: its digest is zero)."""

        found: dict[int, bytes] = {}
        await self._each_group(lambda group: found.update(group.slot_tops()))
        return found

    async def slot_digest(self, slot: int) -> SlotDigest:
        """The slotlet digests of `slot`'s current heads."""
        return await self._with_slot(slot, SlotMeta.digest)

    async def heads_in_slotlets(self, slot: int, slotlets: Iterable[int]
                                ) -> dict[str, HeadKey]:
        """The head order key of each current head of `slot` in `slotlets`."""
        return await self._with_slot(slot, SlotMeta.heads_in, frozenset(slotlets))

    # -- tombstones (RFC 0015) ---------------------------------------------------

    async def last_contact(self) -> float | None:
        """When this node was last in touch with its peers (RFC 0015 §4)."""
        return await self._thread(read_contact, self._disks[0])

    async def record_contact(self, when: float) -> None:
        await self._thread(write_contact, self._disks[0], when)

    async def old_tombstones(self, slot: int, before: float, limit: int) -> dict[str, HeadKey]:
        """Current tombstones of `slot` installed here before `before` (wall seconds)."""
        return await self._with_slot(slot, lambda m: m.old_tombstones(before, limit))

    async def heads_held(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        """The paths of `keys` whose current head here is exactly that head."""
        return await self._with_slot(slot, lambda m: m.held(keys))

    async def forget_heads(self, slot: int, keys: Mapping[str, HeadKey], *,
                           tombstones_only: bool,
                           installed_before: float | None = None) -> set[str]:
        """Forget the current heads of `keys` that are exactly those heads (see
        `SlotMeta.forget_current`), and unlink their part files through the
        GC journal (a crash in between leaks nothing); the paths forgotten."""

        def run(meta: SlotMeta) -> set[str]:
            return meta.forget_current(keys, tombstones_only=tombstones_only,
                                       installed_before=installed_before)

        forgotten = await self._with_slot(slot, run)
        for path in forgotten:
            self.read_cache.invalidate(slot, path, keys[path].sha256)
        if forgotten:
            await self._gc.finish_journal(self.group_path(slot), None, trio.current_time)
        return forgotten

    async def slots_with_data(self) -> set[int]:
        """The slots that have rows on this node (heads, parts, markers): one
        skip-scan per group database."""

        found: set[int] = set()
        await self._each_group(lambda group: found.update(group.slots()))
        return found

    async def _each_group(self, fn: Callable[[GroupMeta], None]) -> None:
        """`fn(group)` for every group database, each held in turn, in a worker thread."""

        def scan() -> None:
            for path in self._cache.groups():
                with self._cache.acquire_group(path) as group:
                    fn(group)

        await self._thread(scan)

    async def drop_slot(self, slot: int) -> None:
        """Remove every row and file of `slot` (it moved to other nodes).

        Rows first, in one transaction, then files: a crash in between never
        leaves a head whose parts are gone (which this node would serve, or
        report as held), only files no row names; start-up removes the files
        of a slot directory whose slot has no rows (`_finish_drops`)."""
        await self._with_slot(slot, _on_disk(SlotMeta.forget_slot))
        self.read_cache.clear()  # a rare event: freeing the slot's entries is all this does
        with trio.CancelScope(shield=True):
            await self._thread(_on_disk(_remove_tree), self.slot_dir(slot) / "blobs")

    def _finish_drops(self) -> None:
        """At start: remove the files of every slot directory whose slot has
        no rows (a drop interrupted between its rows and its files, or files
        whose marker was lost with the power: no row names them)."""
        for slot, slot_dir in sorted(self._slot_dirs.items()):
            blobs = slot_dir / "blobs"
            if not blobs.is_dir():
                continue
            with self._cache.acquire(slot) as meta:
                if meta.has_rows():
                    continue
            _remove_tree(blobs)
            self.finished_drops += 1


def _no_result(head: Head) -> dict[str, Any]:
    return {}


def _read_hashed(reader: PartReader, digest: hashlib._Hash, n: int) -> bytes:
    """The next `n` bytes of `reader`, added to `digest` (one worker-thread call)."""
    data = reader.read(n)
    digest.update(data)
    return data


def _remove_tree(root: Path) -> None:
    """Unlink every file under `root` and remove its directories, deepest
    first (forgetting each in `DURABLE_DIRS`). A missing `root` is fine."""
    if not root.exists():
        return
    for parent, dirs, files in os.walk(root, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(parent, name))
        for name in dirs:
            path = Path(parent) / name
            DURABLE_DIRS.forget(path)
            with contextlib.suppress(OSError):
                os.rmdir(path)
    DURABLE_DIRS.forget(root)
    with contextlib.suppress(OSError):
        os.rmdir(root)


def _inline_loaded(parts: tuple[PartRecord, ...], data: bytes,
                   part_size: int) -> tuple[PartRecord, ...]:
    """`parts` with each inline part's bytes taken from the object's `data`, as
    a read that loads them from SQLite returns them (ranges need no second hop)."""
    return tuple(replace(p, data=data[p.index * part_size:p.index * part_size + p.size_bytes])
                 if p.inline else p for p in parts)


def _hash_chunks(object_hash: hashlib._Hash, batch: Chunks) -> None:
    for chunk in chunks_of(batch):
        object_hash.update(chunk)


async def _together(*jobs: Callable[[], Awaitable[object]]) -> None:
    """Run `jobs` concurrently. The first failure cancels the others and is
    raised as it is (not wrapped in an exception group), so callers and the
    error mapping see the domain error or the OSError itself."""
    failures: list[Exception] = []

    async with trio.open_nursery() as nursery:

        async def guarded(job: Callable[[], Awaitable[object]]) -> None:
            try:
                await job()
            except Exception as exc:
                failures.append(exc)
                nursery.cancel_scope.cancel()

        for job in jobs:
            nursery.start_soon(guarded, job)
    if failures:
        raise failures[0]


def _on_disk(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` with an OSError turned into the storage error it means. Only disk
    steps are wrapped: an OSError from a streamed body (the client's
    connection) is not a disk error and passes through as it is."""

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            raise _disk_error(exc) from None

    return run


def _disk_error(exc: OSError) -> RimioError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the disk is full")
    return DiskError(f"disk error: {exc.strerror or exc}")


_SQLITE_FULL = {sqlite3.SQLITE_FULL}
_SQLITE_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def _sqlite_error(exc: sqlite3.Error) -> RimioError:
    """What a SQLite error means for the client: a full disk (507), a damaged
    database (corruption), or an I/O error this node cannot serve through (503).
    The primary result code is the low byte of SQLite's extended code."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in _SQLITE_FULL or "database or disk is full" in str(exc):
        return InsufficientStorage("the disk is full")
    if primary in _SQLITE_CORRUPT:
        return StorageCorrupt(f"a slot database is damaged: {exc}")
    return DiskError(f"database error: {exc}")
