"""A deterministic in-memory network.

`SimNetwork` delivers byte packets between addresses with per-link latency,
jitter, loss, duplication and reordering, and with one-way or two-way
partitions; `delays` is that link model on its own, for transports that
carry their messages themselves. The SWIM cluster simulator built on it,
`rimio.testing.simcluster.SimCluster`, runs the production
`MembershipService` (it lives in `rimio.testing` because `net` may not import
`cluster`); the full-node chaos harness is `rimio.testing.chaos`.

How determinism is achieved
---------------------------
The network is a discrete-event loop: a heap of ``(time, seq, callback)``
entries, where ``seq`` is a global insertion counter that breaks ties between
events due at the same instant; `run_until` pops them in that order as
trio's clock (normally ``trio.testing.MockClock(autojump_threshold=0)``)
reaches their times. Every random choice comes from the `random.Random` it
is given, never from the `random` module's global state.

Two modes. By default the network is the only actor: callbacks are
synchronous, nothing else runs while one executes, and `run_until` jumps the
MockClock from event to event. With ``live=True`` trio tasks (the membership
services of a `SimCluster`) send at trio's time too: `run_until` then sleeps
to each event and wakes early when one is scheduled sooner, so their timers
fire on time; the order in which ready tasks run then matters, and the
simulator seeds trio's scheduler (`rimio.testing.determinism`).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio
import trio.testing

Callback = Callable[[float], None]
Receiver = Callable[[float, str, bytes], None]


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """Behaviour of one directed link. Times in seconds, rates in [0, 1]."""

    latency: float = 0.002
    jitter: float = 0.001
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # share of packets held back by up to `reorder_delay`
    reorder_delay: float = 0.05


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    partitioned: int = 0
    unreachable: int = 0  # nobody listening (crashed node)
    duplicated: int = 0
    bytes_sent: int = 0
    bytes_by_sender: Counter[str] = field(default_factory=Counter)
    bytes_by_kind: Counter[str] = field(default_factory=Counter)


def partition_links(a: Iterable[str], b: Iterable[str], *,
                    one_way: bool = False) -> set[tuple[str, str]]:
    """The directed links a partition between `a` and `b` cuts."""
    b = list(b)
    cut = {(x, y) for x in a for y in b}
    return cut if one_way else cut | {(y, x) for x, y in cut}


class SimNetwork:
    """Discrete-event packet network; see the module docstring."""

    def __init__(self, rng: random.Random, default: LinkProfile | None = None,
                 *, start: float = 0.0, live: bool = False) -> None:
        self._rng = rng
        # Live: trio tasks send too, at trio's time; `run_until` then sleeps
        # (it never jumps the clock over their timers) and wakes early for an
        # event scheduled before the one it waits for.
        self._live = live
        self._wakeup: trio.CancelScope | None = None
        self.default = default or LinkProfile()
        self._links: dict[tuple[str, str], LinkProfile] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._receivers: dict[str, Receiver] = {}
        self._heap: list[tuple[float, int, Callback]] = []
        self._seq = 0
        self.now = start
        self.stats = NetStats()

    # -- configuration -------------------------------------------------
    def register(self, address: str, receiver: Receiver) -> None:
        self._receivers[address] = receiver

    def unregister(self, address: str) -> None:
        self._receivers.pop(address, None)

    def set_link(self, src: str, dst: str, profile: LinkProfile) -> None:
        self._links[(src, dst)] = profile

    def partition(self, a: Iterable[str], b: Iterable[str], *, one_way: bool = False) -> None:
        """Drop packets from `a` to `b` (and `b` to `a` unless `one_way`)."""
        self._blocked |= partition_links(a, b, one_way=one_way)

    def heal(self) -> None:
        self._blocked.clear()

    # -- events --------------------------------------------------------
    def current_time(self) -> float:
        """Now, for a sender: the event time, or trio's time when live."""
        return max(self.now, trio.current_time()) if self._live else self.now

    def schedule(self, at: float, callback: Callback) -> None:
        self._seq += 1
        at = max(at, self.current_time())
        heapq.heappush(self._heap, (at, self._seq, callback))
        if self._wakeup is not None and at < self._wakeup.deadline:
            self._wakeup.deadline = at

    def send(self, src: str, dst: str, data: bytes, *, kind: str = "",
             reliable: bool = False) -> None:
        """Deliver `data` after the link's delay. `reliable` frames (push-pull,
        which travels over a stream that retransmits) are not lost at random;
        partitions still stop them."""
        self.count_bytes(src, len(data), kind)
        now = self.current_time()
        for delay in self.delays(src, dst, reliable=reliable):
            self.schedule(now + delay, lambda t: self._deliver(t, src, dst, data))

    def count_bytes(self, src: str, size: int, kind: str = "") -> None:
        self.stats.bytes_sent += size
        self.stats.bytes_by_sender[src] += size
        if kind:
            self.stats.bytes_by_kind[kind] += size

    def blocked(self, src: str, dst: str) -> bool:
        """Whether a partition cuts the link from `src` to `dst`."""
        return (src, dst) in self._blocked

    def delays(self, src: str, dst: str, *, reliable: bool = False) -> list[float]:
        """The fate of one message from `src` to `dst`, drawn from the seeded
        generator: one delay per copy delivered, none when it is lost or cut
        by a partition. Counted in `stats` (but for bytes: see `send`)."""
        self.stats.sent += 1
        if (src, dst) in self._blocked:
            self.stats.partitioned += 1
            return []
        link = self._links.get((src, dst), self.default)
        rng = self._rng
        if link.loss and not reliable and rng.random() < link.loss:
            self.stats.lost += 1
            return []
        copies = 1
        if link.duplicate and rng.random() < link.duplicate:
            copies = 2
            self.stats.duplicated += 1
        out = []
        for _ in range(copies):
            delay = link.latency + rng.uniform(0.0, link.jitter)
            if link.reorder and rng.random() < link.reorder:
                delay += rng.uniform(0.0, link.reorder_delay)
            out.append(delay)
        return out

    def _deliver(self, now: float, src: str, dst: str, data: bytes) -> None:
        receiver = self._receivers.get(dst)
        if receiver is None:
            self.stats.unreachable += 1
            return
        self.stats.delivered += 1
        receiver(now, src, data)

    async def run_until(self, deadline: float) -> None:
        """Process every event due up to `deadline`, advancing trio's clock."""
        if self._live:
            await self._run_live(deadline)
            return
        clock = trio.lowlevel.current_clock()
        # Under MockClock, jumping the clock is exact and ~50x cheaper than a
        # trio sleep per event; other tasks still run at periodic checkpoints.
        jump = clock.jump if isinstance(clock, trio.testing.MockClock) else None
        heap = self._heap
        handled = 0
        while heap and heap[0][0] <= deadline:
            at, _, callback = heapq.heappop(heap)
            if at > self.now:
                await self._advance(at, jump)
            self.now = at
            callback(at)
            handled += 1
            if handled % 256 == 0:
                await trio.lowlevel.checkpoint()
        if deadline > self.now:
            await self._advance(deadline, jump)
            self.now = deadline
        await trio.lowlevel.checkpoint()

    async def _run_live(self, deadline: float) -> None:
        heap = self._heap
        while True:
            due = min(heap[0][0] if heap else deadline, deadline)
            if due > trio.current_time():
                with trio.move_on_at(due) as wakeup:
                    self._wakeup = wakeup
                    await trio.sleep_forever()
                self._wakeup = None
                continue
            if not heap or heap[0][0] > deadline:
                break
            at, _, callback = heapq.heappop(heap)
            self.now = max(self.now, at)
            callback(self.now)
            await trio.lowlevel.checkpoint()  # senders woken by this event go now
        self.now = max(self.now, deadline)

    @staticmethod
    async def _advance(at: float, jump: Callable[[float], None] | None) -> None:
        gap = at - trio.current_time()
        if gap <= 0:
            return
        if jump is not None:
            jump(gap)
        else:
            await trio.sleep_until(at)
