"""The clock arithmetic of garbage collection (rfcs/0016-garbage-collection.md).

A grace period must not end early because the wall clock stepped. Three
measures, each arithmetic on times the caller passes in (no clock is read
here):

- `Watermarks`: checkpoints `(monotonic time, row-id watermark)` of one
  metadata database. Row ids only grow, so "every row with id <= w existed
  at monotonic time m" holds whatever the wall clock did; `settled` answers
  the watermark of the newest checkpoint at least `grace` old.
- `OrphanWatch`: when each orphan candidate (a file no row names) was first
  seen orphaned, on the monotonic clock; a candidate is due once it stayed
  orphaned for the grace, and forgotten as soon as a scan no longer reports it.
- `SteadyWall`: a wall time that never runs ahead of the monotonic clock
  since the previous reading: it follows a backward step at once and a
  forward step not at all (for the long expiry of write results).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=Hashable)


@dataclass(slots=True)
class Watermarks:
    """Checkpoints `(mono, mark)` with `mark` non-decreasing, oldest first."""

    _points: deque[tuple[float, int]] = field(default_factory=deque)

    def record(self, mono: float, mark: int) -> None:
        if self._points and mark < self._points[-1][1]:
            mark = self._points[-1][1]  # a row id never goes back: keep the order
        self._points.append((mono, mark))

    def settled(self, mono: float, grace: float) -> int | None:
        """The mark of the newest checkpoint taken at least `grace` before
        `mono` (None: none is that old yet). Older checkpoints are dropped."""
        horizon = mono - grace
        found: int | None = None
        while self._points and self._points[0][0] <= horizon:
            found = self._points[0][1]
            if len(self._points) > 1 and self._points[1][0] <= horizon:
                self._points.popleft()
                continue
            break
        return found

    def __len__(self) -> int:
        return len(self._points)


@dataclass(slots=True)
class OrphanWatch(Generic[S, K]):
    """First-seen monotonic times of orphan candidates, per scope (a slot).

    `limit` bounds the candidates remembered in all: beyond it new ones are
    ignored until a later scan (they are only collected later, never early)."""

    limit: int = 100_000
    _seen: dict[S, dict[K, float]] = field(default_factory=dict)
    _count: int = 0

    def observe(self, scope: S, mono: float, grace: float, candidates: Iterable[K]) -> list[K]:
        """A scan of `scope` at `mono` found `candidates` orphaned: remember
        the new ones, forget those no longer reported, and return those
        orphaned for at least `grace`."""
        before = self._seen.get(scope, {})
        now: dict[K, float] = {}
        room = self.limit - (self._count - len(before))
        for key in candidates:
            first = before.get(key)
            if first is None:
                if len(now) >= room:
                    continue
                first = mono
            now[key] = first
        self._count += len(now) - len(before)
        if now:
            self._seen[scope] = now
        else:
            self._seen.pop(scope, None)
        return [key for key, first in now.items() if mono - first >= grace]

    def forget(self, scope: S, key: K) -> None:
        entries = self._seen.get(scope)
        if entries is not None and entries.pop(key, None) is not None:
            self._count -= 1

    def __len__(self) -> int:
        return self._count


@dataclass(slots=True)
class SteadyWall:
    """A wall time that advances at most as fast as the monotonic clock."""

    _last: tuple[float, float] | None = None  # (steady wall, mono) of the previous reading

    def now(self, wall: float, mono: float) -> float:
        if self._last is None:
            steady = wall
        else:
            prev, at = self._last
            steady = min(wall, prev + max(0.0, mono - at))
        self._last = (steady, mono)
        return steady
