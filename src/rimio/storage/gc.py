"""Garbage collection of a node's disks (rfcs/0016-garbage-collection.md).

One sweep, in this order, over every group database of the node:

1. superseded heads: a head superseded (by wall time) more than the grace
   ago, and whose supersession is older than the grace on this process's
   monotonic clock too (`core.gc.Watermarks` over row ids), loses its rows;
   the same transaction journals its part files (`doomed_files`);
2. the journal: each journaled file is unlinked, unless a row names it
   again or a write of its generation is in progress, then its entry goes;
   a crash anywhere leaves entries that the next sweep (or the next start)
   finishes, so no file is ever left unnamed by both rows and journal;
3. orphans: files under a slot's `blobs/` that no row names, and empty
   directories, seen so for the grace on the monotonic clock
   (`core.gc.OrphanWatch`), are removed holding the slot, after a check
   that still no row names them (a write first records its pending marker,
   holding the slot, then creates files: it never loses one);
4. write results older than their time to live (`core.gc.SteadyWall`).

Unlinks are paced (`files_per_second`). Heads a read is streaming hold a
lease (`ReadLeases`) and are skipped until it ends. Everything here blocks
except `Collector.sweep`, which spreads the work over worker threads.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from rimio.core.gc import OrphanWatch, SteadyWall, Watermarks
from rimio.core.pacing import ByteRate
from rimio.storage.meta import SlotMeta, group_file, slot_dirs
from rimio.storage.parts import prune_empty_dirs
from rimio.storage.slot_cache import SlotCache

# (slot, path, generation, head_sha256): a stored head.
HeadId = tuple[int, str, int, str]

DEFAULT_WRITE_RESULT_TTL = 7 * 86400.0
DEFAULT_FILES_PER_SECOND = 1000.0
# Files unlinked per hold of a group's lock (a write waits at most this long).
_UNLINK_BATCH = 64
# Directory entries the orphan scan reads per sweep (whole slots, round robin).
DEFAULT_SCAN_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class GcPolicy:
    """How garbage is collected: the grace of superseded heads and orphans,
    the time to live of write results, and the pace of unlinks."""

    grace_seconds: float = 600.0
    write_result_ttl_seconds: float = DEFAULT_WRITE_RESULT_TTL
    files_per_second: float = DEFAULT_FILES_PER_SECOND
    batch: int = 256
    scan_entries: int = DEFAULT_SCAN_ENTRIES


@dataclass(slots=True)
class GcCounters:
    superseded_removed: int = 0
    orphans_removed: int = 0
    files_unlinked: int = 0
    bytes_freed: int = 0
    write_results_expired: int = 0
    journal_replayed: int = 0
    sweeps: int = 0
    last_sweep: float = 0.0  # wall time the last sweep ended (0: none yet)


class ReadLeases:
    """Heads a read is streaming: garbage collection leaves their rows and
    files alone until the read ends. Thread-safe (GC checks from a worker)."""

    def __init__(self) -> None:
        self._held: Counter[HeadId] = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, head: HeadId) -> Iterator[None]:
        with self._lock:
            self._held[head] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[head] -= 1
                if self._held[head] <= 0:
                    del self._held[head]

    def __contains__(self, head: object) -> bool:
        with self._lock:
            return head in self._held


Thread = Callable[..., Awaitable[Any]]  # LocalStore._thread: `fn(*args)` in a worker


class Collector:
    """The garbage collection of one `LocalStore`: its per-process clocks
    (watermarks, orphans seen, steady wall time) and its counters."""

    def __init__(self, cache: SlotCache, disks: list[Path], leases: ReadLeases,
                 thread: Thread, forgotten: Callable[[HeadId], None]) -> None:
        self._cache = cache
        self._forgotten = forgotten  # told of every head whose rows are gone
        self._disks = disks
        self._leases = leases
        self._thread = thread
        self._watermarks: dict[Path, Watermarks] = {}
        self._orphans: OrphanWatch[tuple[Path, int], str] = OrphanWatch()
        self._steady = SteadyWall()
        self._cursor = 0  # the next slot directory the orphan scan starts at
        self.counters = GcCounters()
        self._lock = threading.Lock()  # the counters, bumped from worker threads

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            c = self.counters
            return {
                "superseded_removed": c.superseded_removed,
                "orphans_removed": c.orphans_removed,
                "files_unlinked": c.files_unlinked,
                "bytes_freed": c.bytes_freed,
                "write_results_expired": c.write_results_expired,
                "journal_replayed": c.journal_replayed,
                "orphans_watched": len(self._orphans),
                "sweeps": c.sweeps,
                "last_sweep": c.last_sweep,
            }

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.counters, name, getattr(self.counters, name) + delta)

    # -- the whole sweep --------------------------------------------------------

    async def sweep(self, policy: GcPolicy, *, wall: Callable[[], float],
                    mono: Callable[[], float]) -> int:
        """One sweep (see the module docstring); the files unlinked."""
        before = self.counters.files_unlinked
        pace = ByteRate(policy.files_per_second, max(1.0, policy.files_per_second))
        for path in self._cache.groups():
            marks = self._watermarks.setdefault(path, Watermarks())
            now = mono()
            mark = await self._thread(self._watermark, path)
            marks.record(now, mark)
            settled = marks.settled(now, policy.grace_seconds)
            if settled is not None:
                await self.collect_superseded(path, wall() - policy.grace_seconds,
                                              policy.batch, settled)
            await self.finish_journal(path, pace, mono)
        await self.collect_orphans(policy, pace, mono)
        steady = self._steady.now(wall(), mono())
        for path in self._cache.groups():
            await self._thread(self._expire, path, steady - policy.write_result_ttl_seconds)
        with self._lock:
            self.counters.sweeps += 1
            self.counters.last_sweep = wall()
            return self.counters.files_unlinked - before

    def _watermark(self, path: Path) -> int:
        with self._cache.acquire_group(path) as group:
            return group.watermark()

    # -- superseded heads -------------------------------------------------------

    async def collect_superseded(self, path: Path, cutoff: float, batch: int,
                                 watermark: int | None) -> int:
        """Drop the rows of superseded heads of one group (superseded before
        the wall time `cutoff`; with a `watermark`, also by the row-id clock),
        journaling their files. Heads a read holds are skipped. The heads
        removed."""
        removed = 0
        while True:
            step: tuple[int, bool] = await self._thread(self._doom_batch, path, cutoff, batch,
                                                        watermark)
            done, more = step
            removed += done
            if not more:
                return removed

    def _doom_batch(self, path: Path, cutoff: float, batch: int,
                    watermark: int | None) -> tuple[int, bool]:
        with self._cache.acquire_group(path) as group:
            if watermark is None:
                victims = group.superseded_before(cutoff, batch)
            else:
                victims = group.superseded_settled(cutoff, watermark, batch)
            doomed = [head for head in victims if head not in self._leases]
            group.doom_heads(doomed)
        for head in doomed:
            self._forgotten(head)
        self._count(superseded_removed=len(doomed))
        return len(doomed), bool(doomed) and len(victims) == batch

    # -- the journal ------------------------------------------------------------

    async def finish_journal(self, path: Path, pace: ByteRate | None,
                             mono: Callable[[], float]) -> int:
        """Unlink the journaled files of one group (paced by `pace`), then
        forget them. The entries finished."""
        finished = 0
        while True:
            n: int = await self._thread(self._unlink_doomed, path, _UNLINK_BATCH)
            finished += n
            if n < _UNLINK_BATCH:
                return finished
            if pace is not None:
                await trio.sleep(pace.take(mono(), n))

    def finish_journal_sync(self, path: Path) -> int:
        """All of one group's journal at once (at start, before serving)."""
        finished = 0
        while n := self._unlink_doomed(path, 1024):
            finished += n
        return finished

    def _unlink_doomed(self, path: Path, limit: int) -> int:
        disk = path.parent.parent  # a group's rows name files on its own disk
        unlinked = freed = 0
        with self._cache.acquire_group(path) as group:
            entries = group.doomed(limit)
            for entry in entries:
                slot_dir = disk / "slots" / str(entry.slot)
                if not group.slot(entry.slot).file_in_use(entry.path, entry.generation,
                                                          entry.local_path):
                    file = slot_dir / entry.local_path
                    try:
                        os.unlink(file)
                        unlinked += 1
                        freed += entry.file_bytes
                    except FileNotFoundError:
                        pass
                    prune_empty_dirs(file.parent, slot_dir)
            group.clear_doomed([e.id for e in entries])
        self._count(files_unlinked=unlinked, bytes_freed=freed)
        return len(entries)

    # -- orphans ----------------------------------------------------------------

    async def collect_orphans(self, policy: GcPolicy, pace: ByteRate,
                              mono: Callable[[], float]) -> int:
        """Scan slot directories (whole slots, round robin, about
        `policy.scan_entries` entries) and remove what stayed orphaned for
        the grace. The files and directories removed."""
        slots = await self._thread(self._slot_dirs)
        if not slots:
            return 0
        start = self._cursor % len(slots)
        removed = scanned = 0
        for i in range(len(slots)):
            disk, slot = slots[(start + i) % len(slots)]
            self._cursor = (start + i + 1) % len(slots)
            entries, candidates = await self._thread(self._orphans_of, disk, slot)
            scanned += entries
            due = self._orphans.observe((disk, slot), mono(), policy.grace_seconds, candidates)
            for at in range(0, len(due), _UNLINK_BATCH):
                batch = due[at:at + _UNLINK_BATCH]
                n: int = await self._thread(self._remove_orphans, disk, slot, batch)
                for rel in batch:
                    self._orphans.forget((disk, slot), rel)
                removed += n
                await trio.sleep(pace.take(mono(), max(1, n)))
            if scanned >= policy.scan_entries:
                break
        return removed

    def _slot_dirs(self) -> list[tuple[Path, int]]:
        return sorted((disk, slot) for disk in self._disks for slot, _ in slot_dirs(disk))

    def _named(self, disk: Path, slot: int) -> set[str]:
        with self._cache.acquire_group(group_file(disk, slot)) as group:
            return group.slot(slot).named_files()

    def _orphans_of(self, disk: Path, slot: int) -> tuple[int, list[str]]:
        """(entries scanned, orphan candidates): files under the slot's
        `blobs/` no row names (nor the generation directory of a write in
        progress), and empty directories (ending in '/'), relative to the
        slot's directory."""
        slot_dir = disk / "slots" / str(slot)
        files, empty = _walk(slot_dir)
        if not files and not empty:
            return 0, []
        named = self._named(disk, slot)
        candidates = [f for f in files if _unnamed(f, named)]
        if empty:
            kept = _ancestors(named)
            candidates += [d + "/" for d in empty if d not in named and d not in kept]
        return len(files) + len(empty), candidates

    def _remove_orphans(self, disk: Path, slot: int, due: list[str]) -> int:
        """Remove `due` candidates still orphaned, holding the slot (a write
        records its marker holding it before it creates a file)."""
        slot_dir = disk / "slots" / str(slot)
        removed = unlinked = freed = 0
        with self._cache.acquire_group(group_file(disk, slot)) as group:
            meta: SlotMeta = group.slot(slot)
            named = meta.named_files()
            kept: set[str] | None = None
            for rel in due:
                if rel.endswith("/"):
                    d = rel[:-1]
                    if kept is None:
                        kept = _ancestors(named)
                    if d in named or d in kept:
                        continue
                    target = slot_dir / d
                    if target.is_dir() and not any(target.iterdir()):
                        prune_empty_dirs(target, slot_dir)
                        removed += 1
                    continue
                if not _unnamed(rel, named):
                    continue
                file = slot_dir / rel
                try:
                    size = file.stat().st_size
                    os.unlink(file)
                except FileNotFoundError:
                    continue
                removed += 1
                unlinked += 1
                freed += size
                prune_empty_dirs(file.parent, slot_dir)
        self._count(orphans_removed=removed, files_unlinked=unlinked, bytes_freed=freed)
        return removed

    # -- write results ------------------------------------------------------------

    def _expire(self, path: Path, cutoff: float) -> int:
        expired = 0
        while True:
            with self._cache.acquire_group(path) as group:
                n = group.expire_write_results(cutoff, 1000)
            expired += n
            if n < 1000:
                break
        self._count(write_results_expired=expired)
        return expired


def _walk(slot_dir: Path) -> tuple[list[str], list[str]]:
    """(files, empty directories) under `slot_dir/blobs`, relative to `slot_dir`."""
    root = slot_dir / "blobs"
    files: list[str] = []
    empty: list[str] = []
    for parent, dirs, names in os.walk(root):
        rel = os.path.relpath(parent, slot_dir)
        files.extend(f"{rel}/{n}" for n in names)
        if not dirs and not names and parent != str(root):
            empty.append(rel)
    return files, empty


def _unnamed(rel: str, named: set[str]) -> bool:
    """No row names the file, nor its directory (a write in progress)."""
    return rel not in named and rel.rpartition("/")[0] not in named


def _ancestors(named: set[str]) -> set[str]:
    """Every directory above a named entry (a write in progress may be
    about to create its generation directory inside one)."""
    found: set[str] = set()
    for rel in named:
        parent = rel.rpartition("/")[0]
        while parent and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found
