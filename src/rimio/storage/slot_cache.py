"""`SlotCache`: the open slot databases of a node, bounded in number.

A node may hold thousands of slots; keeping every SQLite connection open
costs file descriptors and page cache per slot. The cache keeps at most
`max_open` connections, closing the least recently used idle one when it
needs room. It is used from worker threads: `acquire(slot)` opens (or
reuses) the slot's database and holds the slot's lock for the caller.

Eviction can run inline (the default) or in the owner's background task.

The first time a slot is opened in this process, `on_first_open` runs under
the slot's lock before anyone else may use it; the store uses it to clean up
writes that a previous process left unfinished.

`stats()` counts opens, creations and evictions, so tests and benchmarks can
see what a request pattern costs in database opens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rimio.storage.meta import SlotMeta


@dataclass(frozen=True, slots=True)
class SlotCacheStats:
    opens: int  # databases opened (including creations and re-opens after eviction)
    creations: int  # databases created (the slot had none yet)
    evictions: int  # databases closed to make room
    open_now: int


class SlotCache:
    def __init__(self, slot_dir: Callable[[int], Path], *, max_open: int = 128,
                 on_first_open: Callable[[int, SlotMeta], None] | None = None,
                 on_create: Callable[[int], None] | None = None) -> None:
        self._slot_dir = slot_dir
        self._max_open = max(1, max_open)
        self._on_first_open = on_first_open
        self._on_create = on_create
        self._lock = threading.Lock()  # guards the dicts below, never held during I/O
        self._open: OrderedDict[int, SlotMeta] = OrderedDict()
        self._slot_locks: dict[int, threading.Lock] = {}
        self._seen: set[int] = set()
        # Closing a database checkpoints its WAL (several fsyncs). By default the
        # thread that overfilled the cache pays for it; an owner that runs
        # `evict` in the background clears this so requests never wait for it.
        self.evict_inline = True
        self._opens = 0
        self._creations = 0
        self._evictions = 0

    def _slot_lock(self, slot: int) -> threading.Lock:
        with self._lock:
            lock = self._slot_locks.get(slot)
            if lock is None:
                lock = self._slot_locks[slot] = threading.Lock()
            return lock

    @contextmanager
    def acquire(self, slot: int) -> Iterator[SlotMeta]:
        """The slot's metadata, exclusively, for the duration of the block."""
        lock = self._slot_lock(slot)
        with lock:
            with self._lock:
                meta = self._open.get(slot)
                if meta is not None:
                    self._open.move_to_end(slot)
            if meta is None:
                meta = self._open_locked(slot)
            yield meta
        if self.evict_inline:
            self.evict()

    def _open_locked(self, slot: int) -> SlotMeta:
        d = self._slot_dir(slot)
        if self._on_create is not None:
            self._on_create(slot)
        meta = SlotMeta(d / "meta.sqlite3")
        first = slot not in self._seen
        if first and self._on_first_open is not None:
            self._on_first_open(slot, meta)
        with self._lock:
            self._seen.add(slot)
            self._open[slot] = meta
            self._opens += 1
            self._creations += meta.created
        return meta

    @property
    def over_limit(self) -> bool:
        with self._lock:
            return len(self._open) > self._max_open

    def evict(self) -> None:
        """Close least recently used idle databases until the cache fits."""
        while True:
            with self._lock:
                if len(self._open) <= self._max_open:
                    return
                victim = None
                for slot in self._open:  # least recently used first
                    lock = self._slot_locks[slot]
                    if lock.acquire(blocking=False):
                        victim = slot
                        break
                if victim is None:
                    return  # everything is busy; try again after the next use
                meta = self._open.pop(victim)
                self._evictions += 1
            try:
                meta.close()
            finally:
                self._slot_locks[victim].release()

    def close_all(self) -> None:
        with self._lock:
            slots = list(self._open)
        for slot in slots:
            with self._slot_lock(slot):
                with self._lock:
                    meta = self._open.pop(slot, None)
                if meta is not None:
                    meta.close()

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def stats(self) -> SlotCacheStats:
        with self._lock:
            return SlotCacheStats(self._opens, self._creations, self._evictions,
                                  len(self._open))
