"""`ReadCache`: the bytes of small hot objects, kept in memory, bounded.

An entry is the whole content of one object at one head: keyed by (slot,
path) and tagged with that head's generation and sha256. The cache is never
the consistency point: a read looks up the current head in the slot's
SQLite database first (one indexed lookup) and takes the cached bytes only
when the entry's tag matches that head. The head's sha256 covers its
etag (the sha256 of the content), so bytes tagged with a head are that
head's content whatever happened since: a newer generation, a tombstone, or
a same-generation head from elsewhere simply misses. Invalidation on write
and on garbage collection only frees memory early; it is not what keeps
reads correct, so a read that fills the cache just after a write
invalidated it cannot make anyone see old bytes.

Bounded twice: in total bytes (least recently used entries go first) and
per object (larger objects are never kept). Used from worker threads; one
lock guards the map and is never held during I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from rimio.core.errors import ConfigError
from rimio.core.head import Head
from rimio.storage.parts import PartRecord

DEFAULT_READ_CACHE_BYTES = 32 * 1024 * 1024
DEFAULT_READ_CACHE_MAX_OBJECT_BYTES = 64 * 1024
# What an entry costs beyond its bytes (key, tag, part records), roughly;
# counted so that many tiny objects cannot exceed the bound unseen.
ENTRY_OVERHEAD = 512


@dataclass(frozen=True, slots=True)
class CachedObject:
    generation: int
    head_sha256: str
    # the head's part records, without inline bytes (`data` holds them all)
    parts: tuple[PartRecord, ...]
    data: bytes

    @property
    def cost(self) -> int:
        return len(self.data) + ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class ReadCacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int  # what the entries cost, overhead included


class ReadCache:
    """`max_bytes` 0 turns the cache off; objects above `max_object_bytes` are not kept."""

    def __init__(self, max_bytes: int = DEFAULT_READ_CACHE_BYTES,
                 max_object_bytes: int = DEFAULT_READ_CACHE_MAX_OBJECT_BYTES) -> None:
        if max_bytes < 0 or max_object_bytes < 0:
            raise ConfigError("read cache bounds cannot be negative")
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str], CachedObject] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def fits(self, size: int) -> bool:
        """Whether an object of `size` bytes would be kept."""
        return self.enabled and size <= self.max_object_bytes \
            and size + ENTRY_OVERHEAD <= self.max_bytes

    def get(self, slot: int, head: Head) -> CachedObject | None:
        """The cached content of `head` (the current head, just read), if any."""
        if not self.enabled:
            return None
        key = (slot, head.path)
        with self._lock:
            entry = self._entries.get(key)
            if (entry is None or entry.generation != head.generation
                    or entry.head_sha256 != head.sha256):
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry

    def put(self, slot: int, head: Head, parts: tuple[PartRecord, ...], data: bytes) -> None:
        """Keep `data` as the content of `head`; the caller read it from `head`'s parts."""
        if not self.fits(len(data)) or head.deleted:
            return
        entry = CachedObject(head.generation, head.sha256, parts, data)
        key = (slot, head.path)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.cost
            self._entries[key] = entry
            self._bytes += entry.cost
            while self._bytes > self.max_bytes:
                _, gone = self._entries.popitem(last=False)
                self._bytes -= gone.cost

    def invalidate(self, slot: int, path: str, head_sha256: str | None = None) -> None:
        """Drop what is kept for `path` (a write touched it), or only the
        entry of the head `head_sha256` (garbage collection removed it)."""
        if not self.enabled:
            return
        key = (slot, path)
        with self._lock:
            old = self._entries.get(key)
            if old is None or (head_sha256 is not None and old.head_sha256 != head_sha256):
                return
            del self._entries[key]
            self._bytes -= old.cost

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> ReadCacheStats:
        with self._lock:
            return ReadCacheStats(self._hits, self._misses, len(self._entries), self._bytes)
