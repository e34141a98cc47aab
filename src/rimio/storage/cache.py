"""`ReadCache`: the current heads of recently used paths, and the bytes of the small ones.

An entry is what a read of one path needs: its current head, the head's part
records (without inline bytes) and, for an object of at most
`max_object_bytes`, its whole content. A hit is served from the event loop
with no worker-thread hop and no SQLite read.

Why a cached head can be trusted: the node owns its disks (an exclusive
`flock`, storage/disk.py), so every change of a current head goes through
this process's `LocalStore`, and every such change is bracketed by
`writing()`. The protocol that keeps an entry equal to the head in SQLite:

* A write of a path first drops the path's entry and marks the path busy
  (`writing()`); while it is busy no read may fill an entry for it, and a
  read that began to fill before the write started is told its fill is void.
* The write itself, under the slot's lock and right after its commit, either
  puts the head it applied (`committed`) or drops the entry. Commits of one
  slot are serialised by that lock, so the last commit also puts last.
* A read that misses reads SQLite in a worker thread between `begin_fill`
  and `finish_fill`; the entry is kept only if no write of that path began
  in between. So a fill never puts back a head older than one acknowledged.

A read served while a write is in flight sees the head before that write,
which is what a read concurrent with an unacknowledged write may see; once
the write is acknowledged its `committed` has already replaced the entry.

Bounded twice: in total bytes (least recently used entries go first; heads
and part records count a fixed overhead) and per object (larger objects are
kept as head and parts only). Used from worker threads and the event loop;
one lock guards the maps and is never held during I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from rimio.core.errors import ConfigError
from rimio.core.head import Head
from rimio.storage.parts import PartRecord

DEFAULT_READ_CACHE_BYTES = 32 * 1024 * 1024
DEFAULT_READ_CACHE_MAX_OBJECT_BYTES = 64 * 1024
# What an entry costs beyond its bytes (key, head, tag), roughly; counted so
# that many tiny objects cannot exceed the bound unseen.
ENTRY_OVERHEAD = 512
# What each part record of an entry costs, roughly.
PART_OVERHEAD = 160

Key = tuple[int, str]


@dataclass(frozen=True, slots=True)
class CachedObject:
    head: Head
    # the head's part records, without inline bytes (`data` holds them all)
    parts: tuple[PartRecord, ...]
    data: bytes | None  # the whole content; None when too large to keep (or a tombstone)

    @property
    def cost(self) -> int:
        return ENTRY_OVERHEAD + PART_OVERHEAD * len(self.parts) + len(self.data or b"")


@dataclass(frozen=True, slots=True)
class ReadCacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int  # what the entries cost, overhead included


class Fill:
    """One read's right to put what it reads from SQLite; void once a write
    of its path begins."""

    __slots__ = ("key", "valid")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.valid = True


class ReadCache:
    """`max_bytes` 0 turns the cache off; objects above `max_object_bytes` are
    kept without their bytes."""

    def __init__(self, max_bytes: int = DEFAULT_READ_CACHE_BYTES,
                 max_object_bytes: int = DEFAULT_READ_CACHE_MAX_OBJECT_BYTES) -> None:
        if max_bytes < 0 or max_object_bytes < 0:
            raise ConfigError("read cache bounds cannot be negative")
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, CachedObject] = OrderedDict()
        self._busy: dict[Key, int] = {}  # writes in flight per path
        self._fills: dict[Key, list[Fill]] = {}  # reads filling per path
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def fits(self, size: int) -> bool:
        """Whether the bytes of an object of `size` would be kept."""
        return self.enabled and size <= self.max_object_bytes \
            and size + ENTRY_OVERHEAD <= self.max_bytes

    # -- reads ----------------------------------------------------------------

    def lookup(self, slot: int, path: str, max_bytes: int) -> CachedObject | None:
        """The entry of `path` if it answers a read that wants the bytes of
        objects of at most `max_bytes` (-1: none), else None (a miss)."""
        if not self.enabled:
            return None
        key = (slot, path)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (entry.data is None and not entry.head.deleted
                                 and entry.head.size_bytes <= max_bytes):
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry

    def begin_fill(self, slot: int, path: str) -> Fill | None:
        """Before a read of `path` from SQLite: its right to keep what it
        reads, or None while a write of `path` is in flight."""
        if not self.enabled:
            return None
        key = (slot, path)
        with self._lock:
            if key in self._busy:
                return None
            fill = Fill(key)
            self._fills.setdefault(key, []).append(fill)
            return fill

    def finish_fill(self, fill: Fill | None, head: Head | None,
                    parts: tuple[PartRecord, ...], data: bytes | None) -> None:
        """After that read: keep `head` (the current head it read, None when
        the path has none) unless a write of the path began meanwhile."""
        if fill is None:
            return
        with self._lock:
            waiting = self._fills.get(fill.key)
            if waiting is not None and fill in waiting:
                waiting.remove(fill)
                if not waiting:
                    del self._fills[fill.key]
            if fill.valid and head is not None:
                self._put_locked(fill.key, head, parts, data)

    # -- writes ---------------------------------------------------------------

    @contextmanager
    def writing(self, slot: int, path: str) -> Iterator[None]:
        """Bracket every change of `path`'s current head: drops its entry, voids
        the fills of reads in progress and refuses new ones until the end."""
        if not self.enabled:
            yield
            return
        key = (slot, path)
        with self._lock:
            self._busy[key] = self._busy.get(key, 0) + 1
            for fill in self._fills.pop(key, ()):
                fill.valid = False
            self._drop_locked(key)
        try:
            yield
        finally:
            with self._lock:
                left = self._busy[key] - 1
                if left:
                    self._busy[key] = left
                else:
                    del self._busy[key]

    def committed(self, slot: int, path: str, head: Head | None,
                  parts: tuple[PartRecord, ...], data: bytes | None) -> None:
        """Inside `writing()` and under the slot's lock, right after the commit:
        `head` is now the current head of `path` (with its `parts` and, if in
        hand, its content `data`), or None when the write applied nothing."""
        if not self.enabled:
            return
        key = (slot, path)
        with self._lock:
            if head is None:
                self._drop_locked(key)
            else:
                self._put_locked(key, head, parts, data)

    def invalidate(self, slot: int, path: str, head_sha256: str | None = None) -> None:
        """Drop what is kept for `path`, or only the entry of the head
        `head_sha256` (garbage collection removed that head)."""
        if not self.enabled:
            return
        key = (slot, path)
        with self._lock:
            old = self._entries.get(key)
            if old is None or (head_sha256 is not None and old.head.sha256 != head_sha256):
                return
            self._drop_locked(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> ReadCacheStats:
        with self._lock:
            return ReadCacheStats(self._hits, self._misses, len(self._entries), self._bytes)

    # -- the map, under the lock ----------------------------------------------

    def _put_locked(self, key: Key, head: Head, parts: tuple[PartRecord, ...],
                    data: bytes | None) -> None:
        if head.deleted or data is None or not self.fits(len(data)):
            data = None
        bare = tuple(replace(p, data=None) if p.data is not None else p for p in parts)
        entry = CachedObject(head, bare, data)
        self._drop_locked(key)
        if entry.cost > self.max_bytes:
            return
        self._entries[key] = entry
        self._bytes += entry.cost
        while self._bytes > self.max_bytes:
            _, gone = self._entries.popitem(last=False)
            self._bytes -= gone.cost

    def _drop_locked(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.cost
