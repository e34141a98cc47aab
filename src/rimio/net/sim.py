"""A deterministic in-memory network, and a driver running SWIM members on it.

`SimNetwork` delivers byte packets between addresses with per-link latency,
jitter, loss, duplication and reordering, and with one-way or two-way
partitions. `SimCluster` runs N `rimio.core.swim.Member` state machines over
it, turns their actions into network sends and timer events, and offers fault
controls (crash, restart, pause, slow, partition, leave) and observation
(views, a trace of every membership change).

How determinism is achieved
---------------------------
trio shuffles the order in which ready tasks run, so a simulation built from
one task per node would not replay from a seed. This simulator therefore
runs as a **single-task discrete-event loop**: a heap of ``(time, seq,
callback)`` entries, where ``seq`` is a global insertion counter that breaks
ties between events due at the same instant. `SimNetwork.run_until` pops
events in that order and, before each one, awaits ``trio.sleep_until(time)``
so that trio's clock (normally ``trio.testing.MockClock(autojump_threshold=0)``)
advances with it. Callbacks are synchronous: nothing else runs while one
executes, so task ordering cannot influence the outcome. Every random choice
comes from `random.Random` instances derived from the one seed (the network's,
and one per member), never from the `random` module's global state. Event
times are the scheduled times, not re-read from the clock. The same seed and
the same calls therefore produce the identical event trace, and a failing
seed replays exactly. Nothing here needs to pin trio or seed its scheduler.

Simulated faults are approximations of a real node:

* *paused* (a stalled event loop / SIGSTOP): frames and timers are held;
  on resume the node reports the stall as loop lag, then handles the held
  frames (stamped with the resume time, as a real loop would), then the
  overdue timers.
* *slow* (Lifeguard's "slow member"): each frame is handled a random
  ``lo..hi`` seconds after it arrived, in arrival order; timers run on time.
* *crashed*: the node vanishes; `restart` brings up a fresh `Member`
  (incarnation 0, optionally at a new address) that joins through a seed.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio
import trio.testing

from rimio.core import frames as fr
from rimio.core.frames import Status
from rimio.core.swim import (
    Action,
    Member,
    MemberChanged,
    MemberView,
    Send,
    SetTimer,
    SwimConfig,
    TimerKey,
)

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
                 *, start: float = 0.0) -> None:
        self._rng = rng
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
    def schedule(self, at: float, callback: Callback) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(at, self.now), self._seq, callback))

    def send(self, src: str, dst: str, data: bytes, *, kind: str = "",
             reliable: bool = False) -> None:
        """Deliver `data` after the link's delay. `reliable` frames (push-pull,
        which travels over a stream that retransmits) are not lost at random;
        partitions still stop them."""
        self.stats.bytes_sent += len(data)
        self.stats.bytes_by_sender[src] += len(data)
        self.stats.bytes_by_kind[kind] += len(data)
        for delay in self.delays(src, dst, reliable=reliable):
            self.schedule(self.now + delay, lambda t: self._deliver(t, src, dst, data))

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

    @staticmethod
    async def _advance(at: float, jump: Callable[[float], None] | None) -> None:
        gap = at - trio.current_time()
        if gap <= 0:
            return
        if jump is not None:
            jump(gap)
        else:
            await trio.sleep_until(at)


class SimTimeout(AssertionError):
    """`SimCluster.run_until_true` gave up: the condition never held.

    An AssertionError, so pytest reports it as a failed expectation; it names
    the condition, the simulated seconds waited and the cluster's seed, which
    is all that is needed to replay the run.
    """

    def __init__(self, what: str, waited: float, seed: int) -> None:
        super().__init__(f"{what} still false after {waited:g} s of simulated time "
                         f"(seed {seed})")
        self.what = what
        self.waited = waited
        self.seed = seed


def _describe(predicate: Callable[[], bool]) -> str:
    name = getattr(predicate, "__qualname__", None)
    return name if isinstance(name, str) else repr(predicate)


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One membership change seen by `observer`, at time `t` since start."""

    t: float
    observer: str
    node: str
    status: Status
    incarnation: int
    address: str


@dataclass(slots=True)
class SimNode:
    """One simulated process hosting a `Member`."""

    node_id: str
    address: str
    member: Member
    generation: int = 0
    crashed: bool = False
    paused_since: float | None = None
    held_frames: deque[tuple[str, bytes]] = field(default_factory=deque)
    held_timers: list[TimerKey] = field(default_factory=list)
    slow: tuple[float, float] | None = None
    slow_busy_until: float = 0.0
    last_lag_report: float = float("-inf")


class SimCluster:
    """N SWIM members over a `SimNetwork`, with fault controls.

    Create it inside a trio run (it reads the start time from trio's clock),
    then ``await cluster.run_for(seconds)``; faults and observations are plain
    method calls between runs. Node ids are ``n00, n01, ...`` at addresses
    ``10.0.0.<i>:7000``; node 0 is the seed the others join.
    """

    def __init__(self, n: int, *, seed: int, config: SwimConfig | None = None,
                 link: LinkProfile | None = None, join: bool = True) -> None:
        self.config = config or SwimConfig(cluster="sim")
        self.seed = seed
        self._rng = random.Random(seed)
        self.t0 = trio.current_time()
        self.net = SimNetwork(random.Random(self._rng.getrandbits(64)), link, start=self.t0)
        self.trace: list[TraceEvent] = []
        self.nodes: dict[str, SimNode] = {}
        self._seed_address = self.address_for(0)
        for i in range(n):
            self._spawn(f"n{i:02d}", self.address_for(i), join=join and i > 0)

    @staticmethod
    def address_for(i: int) -> str:
        return f"10.0.0.{i}:7000"

    @property
    def now(self) -> float:
        """Seconds since the cluster was created."""
        return self.net.now - self.t0

    async def run_for(self, seconds: float) -> None:
        await self.net.run_until(self.net.now + seconds)

    async def run_until_true(self, predicate: Callable[[], bool], *, within: float,
                             step: float = 0.25, what: str | None = None) -> float:
        """Run until `predicate()` holds (checked every `step`); return the
        simulated time it took.

        Raises `SimTimeout` if it still fails after `within` seconds: a caller
        that forgot to check a None here would go on to assert things about a
        cluster that never reached the state it waited for. `what` names the
        condition in the error (default: the predicate's qualified name).
        """
        start = self.net.now
        while self.net.now - start < within:
            if predicate():
                return self.net.now - start
            await self.run_for(step)
        waited = self.net.now - start
        if predicate():
            return waited
        raise SimTimeout(what or _describe(predicate), waited, self.seed)

    # -- node lifecycle -------------------------------------------------
    def _spawn(self, node_id: str, address: str, *, join: bool,
               seeds: Sequence[str] | None = None, generation: int = 0) -> SimNode:
        now = self.net.now
        member = Member(self.config, node_id, address, random.Random(self._rng.getrandbits(64)),
                        now)
        node = SimNode(node_id, address, member, generation)
        self.nodes[node_id] = node
        self.net.register(address, lambda t, src, data: self._receive(node, t, src, data))
        self._run(node, member.start(now))
        if join:
            self._run(node, member.join(now, list(seeds or [self._seed_address])))
        return node

    def join(self, node_id: str, seeds: Sequence[str] | None = None) -> None:
        """Make a node join through `seeds` (default: node 0's address)."""
        node = self.nodes[node_id]
        self._run(node, node.member.join(self.net.now, list(seeds or [self._seed_address])))

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.crashed = True
        node.generation += 1
        self.net.unregister(node.address)

    def restart(self, node_id: str, *, address: str | None = None) -> None:
        """Bring a crashed node back as a fresh process (incarnation 0)."""
        old = self.nodes[node_id]
        if not old.crashed:
            self.crash(node_id)
        seeds = [n.address for n in self.nodes.values()
                 if not n.crashed and n.node_id != node_id][:3]
        self._spawn(node_id, address or old.address, join=True, seeds=seeds,
                    generation=old.generation + 1)

    def leave(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self._run(node, node.member.leave(self.net.now))

    def pause(self, node_id: str) -> None:
        self.nodes[node_id].paused_since = self.net.now

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.paused_since is None:
            return
        now = self.net.now
        lag = now - node.paused_since
        node.paused_since = None
        m = node.member
        self._run(node, m.report_loop_lag(now, lag))
        while node.held_frames:
            src, data = node.held_frames.popleft()
            self._run(node, m.handle_data(now, src, data))
        timers, node.held_timers = node.held_timers, []
        for key in timers:
            self._run(node, m.handle_timer(now, key))

    def set_slow(self, node_id: str, lo: float, hi: float) -> None:
        """Handle every incoming frame `lo..hi` seconds late."""
        self.nodes[node_id].slow = (lo, hi)

    def clear_slow(self, node_id: str) -> None:
        self.nodes[node_id].slow = None

    def partition(self, a: Iterable[str], b: Iterable[str], *, one_way: bool = False) -> None:
        self.net.partition([self.nodes[x].address for x in a],
                           [self.nodes[y].address for y in b], one_way=one_way)

    def heal(self) -> None:
        self.net.heal()

    # -- plumbing ---------------------------------------------------------
    def _receive(self, node: SimNode, now: float, src: str, data: bytes) -> None:
        if node.crashed:
            return
        if node.paused_since is not None:
            node.held_frames.append((src, data))
            return
        if node.slow is None:
            self._run(node, node.member.handle_data(now, src, data))
            return
        lo, hi = node.slow
        at = max(node.slow_busy_until, now + self._rng.uniform(lo, hi))
        node.slow_busy_until = at
        gen = node.generation
        self.net.schedule(at, lambda t: self._late_frame(node, gen, now, t, src, data))

    def _late_frame(self, node: SimNode, gen: int, arrived: float, now: float, src: str,
                    data: bytes) -> None:
        if node.crashed or node.generation != gen:
            return
        m = node.member
        if now - node.last_lag_report >= 1.0:
            # What the shell's loop-lag monitor would measure, about once a second.
            node.last_lag_report = now
            self._run(node, m.report_loop_lag(now, now - arrived))
        self._run(node, m.handle_data(now, src, data))

    def _timer(self, node: SimNode, gen: int, key: TimerKey, now: float) -> None:
        if node.crashed or node.generation != gen:
            return
        if node.paused_since is not None:
            node.held_timers.append(key)
            return
        self._run(node, node.member.handle_timer(now, key))

    def _run(self, node: SimNode, actions: list[Action]) -> None:
        cluster = self.config.cluster
        for a in actions:
            if isinstance(a, Send):
                self.net.send(node.address, a.to, fr.encode(a.frame, cluster=cluster),
                              kind=a.frame.TYPE, reliable=a.stream)
            elif isinstance(a, SetTimer):
                self.net.schedule(a.at, functools.partial(self._timer, node, node.generation,
                                                          a.key))
            elif isinstance(a, MemberChanged):
                self.trace.append(TraceEvent(round(self.net.now - self.t0, 9), node.node_id,
                                             a.node_id, a.status, a.incarnation, a.address))

    # -- observation ------------------------------------------------------
    def running(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if not n.crashed]

    def views(self) -> dict[str, list[MemberView]]:
        """Every running node's membership view."""
        return {n.node_id: n.member.members() for n in self.running()}

    def status(self, observer: str, node_id: str) -> Status | None:
        view = self.nodes[observer].member.member(node_id)
        return None if view is None else view.status

    def all_see(self, node_ids: Iterable[str], status: Status, *,
                observers: Iterable[str] | None = None) -> bool:
        """Every observer (default: running nodes) sees every node in `status`."""
        targets = list(node_ids)
        obs = list(observers) if observers is not None else [n.node_id for n in self.running()]
        return all(self.status(o, t) is status for o in obs for t in targets if o != t)

    def converged_alive(self) -> bool:
        """Every running node sees every running node alive."""
        ids = [n.node_id for n in self.running()]
        return self.all_see(ids, Status.ALIVE, observers=ids)

    def dead_verdicts(self, about: str | None = None) -> list[TraceEvent]:
        return [e for e in self.trace if e.status is Status.DEAD
                and (about is None or e.node == about)]
