"""`SlotCache`: the open metadata databases of a node, bounded in number.

Slots share group databases (storage/meta.py): slot `s` lives in the group
file that `group_path(s)` names, at most `GROUPS` per disk. The cache keeps
at most `max_open` of those connections open, closing the least recently
used idle one when it needs room; with the default bound every group of
every disk stays open, so a request never opens or closes a database. It is
used from worker threads: `acquire(slot)` opens (or reuses) the slot's group
database and holds the group's lock for the caller, handing out the view of
the slot's rows; `acquire_group(path)` hands out the whole group (scans).

Eviction can run inline (the default) or in the owner's background task.

`stats()` counts opens, creations and evictions of metadata databases, so
tests and benchmarks can see what a request pattern costs in database opens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rimio.storage.meta import GroupMeta, SlotMeta


@dataclass(frozen=True, slots=True)
class SlotCacheStats:
    opens: int  # metadata databases opened (including creations and re-opens after eviction)
    creations: int  # metadata databases created (the group had none yet)
    evictions: int  # metadata databases closed to make room
    open_now: int


class SlotCache:
    def __init__(self, group_path: Callable[[int], Path], *, max_open: int = 128) -> None:
        self._group_path = group_path
        self._max_open = max(1, max_open)
        self._lock = threading.Lock()  # guards the dicts below, never held during I/O
        self._open: OrderedDict[Path, GroupMeta] = OrderedDict()
        self._group_locks: dict[Path, threading.Lock] = {}
        self._known: set[Path] = set()  # every group database opened in this process
        # Closing a database checkpoints its WAL (several fsyncs). By default the
        # thread that overfilled the cache pays for it; an owner that runs
        # `evict` in the background clears this so requests never wait for it.
        self.evict_inline = True
        self._opens = 0
        self._creations = 0
        self._evictions = 0

    def _lock_of(self, path: Path) -> threading.Lock:
        with self._lock:
            lock = self._group_locks.get(path)
            if lock is None:
                lock = self._group_locks[path] = threading.Lock()
            return lock

    @contextmanager
    def acquire(self, slot: int) -> Iterator[SlotMeta]:
        """The slot's metadata, its group held exclusively, for the duration of the block."""
        with self.acquire_group(self._group_path(slot)) as group:
            yield group.slot(slot)

    @contextmanager
    def acquire_group(self, path: Path) -> Iterator[GroupMeta]:
        """The group database at `path` (created if missing), held exclusively."""
        lock = self._lock_of(path)
        with lock:
            with self._lock:
                group = self._open.get(path)
                if group is not None:
                    self._open.move_to_end(path)
            if group is None:
                group = self._open_locked(path)
            yield group
        if self.evict_inline:
            self.evict()

    def _open_locked(self, path: Path) -> GroupMeta:
        group = GroupMeta(path)
        with self._lock:
            self._known.add(path)
            self._open[path] = group
            self._opens += 1
            self._creations += group.created
        return group

    def groups(self) -> list[Path]:
        """Every group database this cache has opened (open now or not), sorted."""
        with self._lock:
            return sorted(self._known)

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
                for path in self._open:  # least recently used first
                    lock = self._group_locks[path]
                    if lock.acquire(blocking=False):
                        victim = path
                        break
                if victim is None:
                    return  # everything is busy; try again after the next use
                group = self._open.pop(victim)
                self._evictions += 1
            try:
                group.close()
            finally:
                self._group_locks[victim].release()

    def close_all(self) -> None:
        with self._lock:
            paths = list(self._open)
        for path in paths:
            with self._lock_of(path):
                with self._lock:
                    group = self._open.pop(path, None)
                if group is not None:
                    group.close()

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def stats(self) -> SlotCacheStats:
        with self._lock:
            return SlotCacheStats(self._opens, self._creations, self._evictions,
                                  len(self._open))
