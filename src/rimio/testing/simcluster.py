"""`SimCluster`: N membership services over a simulated network, seeded.

Each node is the production `rimio.cluster.membership.MembershipService`
(the trio driver of `rimio.core.swim.Member` that a real node runs), talking
through a `SimPacketTransport` over a live `rimio.net.sim.SimNetwork`, all in
one trio run under ``trio.testing.MockClock(autojump_threshold=0)``. The
cluster offers fault controls (crash, restart, pause, slow, partition, leave)
and observation (views, a trace of every membership change).

How determinism is achieved
---------------------------
The services are trio tasks (system tasks of the current run: a test creates
a cluster with a plain constructor and drives it with `run_for`), so the
order in which ready tasks run matters. Creating a cluster stops the one
created before it in the same run, if any: one trio run hosts one simulated
cluster at a time, or their tasks would share the scheduler's random
stream. The first `run_for` waits for those old tasks to end, seeds trio's
scheduler from the cluster's seed (`rimio.testing.determinism`), and only
then starts the nodes' tasks. Every other random choice comes from generators derived from
the seed (the network's, one per member). Times are MockClock's. The same
seed and the same calls therefore produce the identical trace.

Simulated faults are approximations of a real node:

* *paused* (a stalled event loop / SIGSTOP): `MembershipService.pause`
  holds frames and timers; on resume the node reports the stall as loop
  lag, then handles the held frames (stamped with the resume time), then the
  overdue timers. Push-pull requests to it wait too.
* *slow* (Lifeguard's "slow member"): each frame is handled a random
  ``lo..hi`` seconds after it arrived, in arrival order; timers run on time.
* *crashed*: the service's scope is cancelled (no leave); `restart` brings
  up a fresh service (incarnation 0, optionally at a new address) that joins
  through a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from rimio.cluster.membership import MembershipService
from rimio.core.frames import Status
from rimio.core.swim import Action, Member, MemberChanged, MemberView, Send, SwimConfig
from rimio.net.sim import LinkProfile, SimNetwork
from rimio.net.transport import TransportError
from rimio.testing.determinism import seed_trio_scheduler

__all__ = ["LinkProfile", "SimCluster", "SimNode", "SimTimeout", "TraceEvent"]

STREAM_TIMEOUT = 10.0
"""How long a push-pull waits for its answer (HttpTransport's stream timeout)."""

_current: trio.lowlevel.RunVar[SimCluster | None] = trio.lowlevel.RunVar("sim_cluster", None)


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
    """One simulated process hosting a `MembershipService`."""

    node_id: str
    address: str
    service: MembershipService
    generation: int = 0
    crashed: bool = False
    started: bool = False
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)
    on_start: list[Callable[[], None]] = field(default_factory=list)
    held_streams: list[Callable[[], None]] = field(default_factory=list)
    slow: tuple[float, float] | None = None
    slow_busy_until: float = 0.0
    last_lag_report: float = float("-inf")

    @property
    def member(self) -> Member:
        return self.service.member

    @property
    def paused(self) -> bool:
        return self.service.paused


class SimPacketTransport:
    """A node's `Transport` on the simulated network: packets go through the
    network's heap (loss, delay, partitions); a push-pull is a request and an
    answer, each a reliable message, that a partition or a crash turns into
    a `TransportError` after the stream timeout."""

    def __init__(self, address: str, cluster: SimCluster) -> None:
        self._address = address
        self._cluster = cluster

    @property
    def address(self) -> str:
        return self._address

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        self._cluster.net.send(self._address, address, data)

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        net = self._cluster.net
        src = self._address
        net.count_bytes(src, len(data))
        answer: list[bytes] = []
        done = trio.Event()

        def answered(reply: bytes) -> None:
            back = net.delays(address, src, reliable=True)
            if not back:
                return
            net.count_bytes(address, len(reply))

            def arrive(_: float) -> None:
                answer.append(reply)
                done.set()
            net.schedule(net.current_time() + back[0], arrive)

        there = net.delays(src, address, reliable=True)
        if there:
            net.schedule(net.current_time() + there[0],
                         lambda t: self._cluster._stream_arrived(address, t, src, data,
                                                                 answered))
        with trio.move_on_after(STREAM_TIMEOUT):
            await done.wait()
        if not answer:
            raise TransportError(f"{address}: no answer to the push-pull")
        return answer[0]

    async def aclose(self) -> None:
        pass


class SimCluster:
    """N membership services over a live `SimNetwork`, with fault controls.

    Create it inside a trio run driven by a MockClock (it reads the start time
    from trio's clock), then ``await cluster.run_for(seconds)``; faults and
    observations are plain method calls between runs. Node ids are ``n00,
    n01, ...`` at addresses ``10.0.0.<i>:7000``; node 0 is the seed the others
    join. `close()` stops every node (a newer cluster in the same run does it).
    """

    def __init__(self, n: int, *, seed: int, config: SwimConfig | None = None,
                 link: LinkProfile | None = None, join: bool = True) -> None:
        self._previous = _current.get()
        if self._previous is not None:
            self._previous.close()
        _current.set(self)
        self._hosted = False
        self.config = config or SwimConfig(cluster="sim")
        self.seed = seed
        self._rng = random.Random(seed)
        self.t0 = trio.current_time()
        self.net = SimNetwork(random.Random(self._rng.getrandbits(64)), link, start=self.t0,
                              live=True)
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
        return self.net.current_time() - self.t0

    async def run_for(self, seconds: float) -> None:
        if not self._hosted:
            await self._host_all()
        await self.net.run_until(self.net.current_time() + seconds)

    async def _host_all(self) -> None:
        """Start the nodes' tasks, once the previous cluster's are gone and
        with trio's scheduler seeded: from here on, what runs when is a
        function of the seed."""
        self._hosted = True
        if self._previous is not None:
            for old in self._previous.nodes.values():
                if old.scope is not None:
                    await old.done.wait()
            self._previous = None
        seed_trio_scheduler(self.seed)
        for node in self.nodes.values():
            trio.lowlevel.spawn_system_task(self._host, node, name=f"sim-{node.node_id}")

    async def run_until_true(self, predicate: Callable[[], bool], *, within: float,
                             step: float = 0.25, what: str | None = None) -> float:
        """Run until `predicate()` holds (checked every `step`); return the
        simulated time it took.

        Raises `SimTimeout` if it still fails after `within` seconds: a caller
        that forgot to check a None here would go on to assert things about a
        cluster that never reached the state it waited for. `what` names the
        condition in the error (default: the predicate's qualified name).
        """
        start = self.now
        while self.now - start < within:
            if predicate():
                return self.now - start
            await self.run_for(step)
        waited = self.now - start
        if predicate():
            return waited
        raise SimTimeout(what or _describe(predicate), waited, self.seed)

    def close(self) -> None:
        """Stop every node (as by a crash) and the cluster's timers."""
        for node in self.nodes.values():
            if node.scope is not None:
                node.scope.cancel()
            node.crashed = True

    # -- node lifecycle -------------------------------------------------------------

    def _spawn(self, node_id: str, address: str, *, join: bool,
               seeds: Sequence[str] | None = None, generation: int = 0) -> SimNode:
        service = MembershipService(
            self.config, node_id, address, SimPacketTransport(address, self),
            seeds=list(seeds or [self._seed_address]) if join else (),
            rng=random.Random(self._rng.getrandbits(64)))
        node = SimNode(node_id, address, service, generation)
        service.member_listeners.append(lambda a: self._changed(node, a))
        service.send_listeners.append(lambda a, size: self._sent(node, a, size))
        self.nodes[node_id] = node
        self.net.register(address, lambda t, src, data: self._receive(node, t, src, data))
        if self._hosted:
            trio.lowlevel.spawn_system_task(self._host, node, name=f"sim-{node_id}")
        return node

    async def _host(self, node: SimNode) -> None:
        try:
            with trio.CancelScope() as scope:
                node.scope = scope
                if node.crashed:
                    return
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.service.run)
                    node.started = True
                    for pending in node.on_start:
                        pending()
                    node.on_start.clear()
        finally:
            node.done.set()

    def _when_started(self, node: SimNode, fn: Callable[[], None]) -> None:
        if node.started:
            fn()
        else:
            node.on_start.append(fn)

    def apply(self, node_id: str, actions: list[Action]) -> None:
        """Carry out actions obtained by driving a node's member directly."""
        self.nodes[node_id].service.apply(actions)

    def join(self, node_id: str, seeds: Sequence[str] | None = None) -> None:
        """Make a node join through `seeds` (default: node 0's address)."""
        node = self.nodes[node_id]
        addresses = list(seeds or [self._seed_address])
        self._when_started(node, lambda: node.service.apply(
            node.member.join(self.net.current_time(), addresses)))

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.crashed = True
        node.generation += 1
        if node.scope is not None:
            node.scope.cancel()
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
        self._when_started(node, lambda: node.service.apply(
            node.member.leave(self.net.current_time())))

    def pause(self, node_id: str) -> None:
        self.nodes[node_id].service.pause()

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.paused or node.crashed:
            return
        node.service.resume()
        held, node.held_streams = node.held_streams, []
        for answer in held:
            answer()

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

    # -- plumbing ---------------------------------------------------------------------

    def _changed(self, node: SimNode, change: MemberChanged) -> None:
        """Every membership change a node reports (subclasses observe more)."""
        self.trace.append(TraceEvent(round(self.now, 9), node.node_id, change.node_id,
                                     change.status, change.incarnation, change.address))

    def _sent(self, node: SimNode, action: Send, size: int) -> None:
        """Every frame a node sends, with its size on the wire."""
        self.net.stats.bytes_by_kind[action.frame.TYPE] += size

    def _late(self, node: SimNode, arrived: float, handle: Callable[[float], None]) -> None:
        """Run `handle` when a slow node gets round to a frame that arrived at
        `arrived`, reporting its lag about once a second as a real loop's lag
        monitor would."""
        assert node.slow is not None
        lo, hi = node.slow
        at = max(node.slow_busy_until, arrived + self._rng.uniform(lo, hi))
        node.slow_busy_until = at
        gen = node.generation

        def late(now: float) -> None:
            if node.crashed or node.generation != gen:
                return
            if now - node.last_lag_report >= 1.0:
                node.last_lag_report = now
                node.service.report_loop_lag(now - arrived)
            handle(now)
        self.net.schedule(at, late)

    def _receive(self, node: SimNode, now: float, src: str, data: bytes) -> None:
        if node.crashed:
            return
        if node.slow is None:
            node.service.deliver_packet(src, data, now)
        else:
            self._late(node, now, lambda t: node.service.deliver_packet(src, data, t))

    def _stream_arrived(self, address: str, now: float, src: str, data: bytes,
                        answered: Callable[[bytes], None]) -> None:
        node = next((n for n in self.nodes.values()
                     if n.address == address and not n.crashed), None)
        if node is None:
            return  # refused: the sender times out

        def answer(at: float) -> None:
            if node.crashed:
                return
            reply = node.service.answer_stream(src, data, at)
            if reply:
                answered(reply)

        if node.paused:
            node.held_streams.append(lambda: answer(self.net.current_time()))
        elif node.slow is not None:
            self._late(node, now, answer)
        else:
            answer(now)

    # -- observation ------------------------------------------------------------------

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
