"""The chaos harness: full nodes, one trio run, a seeded world (RFC 0011 §8).

`ChaosCluster` runs N real `rimio.node.Node`s — storage on real disks, the
internal API, membership through the production `MembershipService` — in one
trio run under `trio.testing.MockClock`, with no sockets: an in-memory network
built on `rimio.net.sim.SimNetwork`'s link model carries gossip (a
`SimGossipTransport` per node) and node-to-node HTTP (`SimHttpTransport`, an
httpx transport that calls the target node's ASGI app in the target's own
nursery, so a crash cuts its requests off). Faults: seeded delay, jitter and
loss, two-way and one-way partitions, paused nodes (a stalled loop: gossip
and requests to it wait), crashes (the node's scope is cancelled, no leave)
and restarts on the same disk, a wall clock per node skewed by up to an
hour, and layout changes: a spare node joins through the others (and its
slots move to it) and a holding node is decommissioned (its slots move
away), both while clients write.

`run_seed(seed)` plays one seeded scenario: clients issue PUT, DELETE, GET
and LIST to several nodes while a seeded fault schedule runs; then every
fault is healed, the cluster is left to settle, the final state is read, and
`rimio.testing.chaos_checker.check` judges the history.

How determinism is achieved
---------------------------
* The clock is `MockClock(autojump_threshold=0)`: time moves only when every
  task is blocked, straight to the next deadline.
* Nothing leaves the trio thread: nodes run with `InMemoryIO`, so their disk
  work runs inline (a worker thread would let the clock jump while it works)
  and no socket is opened.
* Every random choice comes from generators derived from the seed: the
  network's, each node's membership, the workload's and the fault
  schedule's; and trio's own scheduler, which shuffles the order of ready
  tasks with `trio._core._run._r`, is seeded at the start of the run after
  switching on its deterministic mode (each batch sorted by task creation
  before the shuffle, as under Hypothesis): `rimio.testing.determinism`.
* The cyclic garbage collector is off during a run (and run before it):
  the finalizers it calls at unpredictable points (async generators' among
  them, which trio turns into tasks) would change the schedule.
* Time stamps and orders never come from the host: the history records
  `trio.current_time()` relative to the start.

So the same seed gives the same history, byte for byte, in one process or
in another (`tests/sim/test_chaos.py` checks both, the second with another
`PYTHONHASHSEED`); a failing seed prints the command that replays it.
"""

from __future__ import annotations

import gc
import hashlib
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import trio
import trio.testing

from rimio.cluster.membership import MembershipService
from rimio.config import (
    Address,
    ClusterConfig,
    NodeConfig,
    NodeSpec,
    RepairConfig,
    ReplicationConfig,
    StorageConfig,
)
from rimio.core.head import Head
from rimio.core.layout import Layout, LayoutError, Role
from rimio.net.sim import LinkProfile, SimNetwork
from rimio.net.transport import TransportError
from rimio.node import InMemoryIO, Node
from rimio.testing.chaos_checker import (
    ABSENT,
    Applied,
    FinalRead,
    History,
    Op,
    OpKind,
    Outcome,
    Version,
    Violation,
    check,
)
from rimio.testing.determinism import seed_trio_scheduler

__all__ = [
    "ChaosCluster",
    "ChaosParams",
    "ChaosResult",
    "SimGossipTransport",
    "SimHttpTransport",
    "replay_command",
    "run_seed",
]

EPOCH = 1_800_000_000.0
"""The wall-clock time (seconds since 1970) the simulation starts at."""

CONNECT_TIMEOUT = 2.0
"""How long a connection attempt across a partition hangs before it fails."""


# -- the network -------------------------------------------------------------------


class _Host:
    """One simulated process: a running node (or none, while crashed)."""

    def __init__(self, node_id: str, address: str) -> None:
        self.node_id = node_id
        self.address = address
        self.node: Node | None = None
        self.requests: trio.Nursery | None = None  # the node's request handlers
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.paused = False
        self.resumed = trio.Event()

    @property
    def membership(self) -> MembershipService | None:
        return None if self.node is None else self.node.membership

    async def wait_running(self) -> None:
        while self.paused:
            await self.resumed.wait()


class SimWorld:
    """The in-memory network of a `ChaosCluster`: SimNetwork's seeded link
    model (delay, jitter, loss, partitions) applied to gossip and HTTP."""

    def __init__(self, rng: random.Random, link: LinkProfile) -> None:
        self.net = SimNetwork(rng, link, start=trio.current_time())
        self.hosts: dict[str, _Host] = {}

    def host_at(self, address: str) -> _Host | None:
        return self.hosts.get(address)


class SimGossipTransport:
    """`rimio.net.transport.Transport` over a `SimWorld`: packets may be lost,
    streams (push-pull over TCP) are not, and partitions stop both."""

    def __init__(self, address: str, world: SimWorld) -> None:
        self._address = address
        self._world = world
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    def _me(self) -> _Host | None:
        return self._world.host_at(self._address)

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        if self._closed:
            raise TransportError(f"{address}: the transport is closed")
        me = self._me()
        if me is not None:
            await me.wait_running()
        for delay in self._world.net.delays(self._address, address):
            await trio.sleep(delay)
            target = self._world.host_at(address)
            if target is None or target.membership is None:
                return  # nobody listening: a datagram vanishes
            target.membership.deliver_packet(self._address, data, trio.current_time())

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        if self._closed:
            raise TransportError(f"{address}: the transport is closed")
        net = self._world.net
        there = net.delays(self._address, address, reliable=True)
        if not there:
            await trio.sleep(CONNECT_TIMEOUT)
            raise TransportError(f"{address}: connect timeout (partitioned)")
        await trio.sleep(there[0])
        target = self._world.host_at(address)
        if target is None or target.membership is None:
            raise TransportError(f"{address}: connection refused")
        await target.wait_running()
        membership = target.membership
        if membership is None:
            raise TransportError(f"{address}: connection reset")
        reply = membership.answer_stream(self._address, data, trio.current_time()) or b""
        back = net.delays(address, self._address, reliable=True)
        if not back:
            await trio.sleep(CONNECT_TIMEOUT)
            raise TransportError(f"{address}: read timeout (partitioned)")
        await trio.sleep(back[0])
        return reply

    async def aclose(self) -> None:
        self._closed = True


class SimHttpTransport(httpx.AsyncBaseTransport):
    """httpx over a `SimWorld`: each request goes to the ASGI app of the node
    at the URL's address, run in that node's nursery, after the link's delay;
    the answer comes back after the reverse link's. A partition looks like a
    connect timeout (request direction) or a read timeout (answer direction:
    the request *was* served); a crashed node refuses connections, and one
    that crashes mid-request resets it. Bodies are buffered (the chaos
    workload's objects are small)."""

    def __init__(self, source: str, world: SimWorld) -> None:
        self._source = source
        self._world = world

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        connect = timeouts.get("connect") or CONNECT_TIMEOUT
        read = timeouts.get("read") or 60.0
        address = f"{request.url.host}:{request.url.port}"
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        net = self._world.net
        me = self._world.host_at(self._source)
        if me is not None:
            await me.wait_running()
        there = net.delays(self._source, address, reliable=True)
        if not there:
            await trio.sleep(connect)
            raise httpx.ConnectTimeout("partitioned", request=request)
        await trio.sleep(there[0])
        target = self._world.host_at(address)
        if target is None or target.node is None or target.requests is None:
            raise httpx.ConnectError("connection refused", request=request)
        with trio.move_on_after(read) as waited:
            await target.wait_running()
            answer = await _call_asgi(target, request, body)
            back = net.delays(address, self._source, reliable=True)
            if back:
                await trio.sleep(back[0])
            else:
                await trio.sleep_forever()
        if waited.cancelled_caught:
            raise httpx.ReadTimeout("no answer", request=request)
        if answer is None:
            raise httpx.RemoteProtocolError("connection reset", request=request)
        status, headers, content = answer
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content),
                              request=request)


async def _call_asgi(host: _Host, request: httpx.Request, body: bytes
                     ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """Run one request through the ASGI app of `host`'s node, in its nursery;
    None when the node went away before answering."""
    node, nursery = host.node, host.requests
    assert node is not None and nursery is not None
    raw_path, _, query = request.url.raw_path.partition(b"?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": request.method, "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
        "query_string": query, "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": ("10.255.0.1", 50000), "server": (host.address.rsplit(":", 1)[0], 7000),
        "extensions": {}, "state": {},
    }
    status: list[int] = []
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    finished = trio.Event()
    gone = trio.Event()
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(int(message["status"]))
            headers.extend((bytes(k), bytes(v)) for k, v in message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    async def serve() -> None:
        try:
            await node.app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            gone.set()

    nursery.start_soon(serve)
    async with trio.open_nursery() as watch:
        async def until(event: trio.Event) -> None:
            await event.wait()
            watch.cancel_scope.cancel()
        watch.start_soon(until, finished)
        watch.start_soon(until, gone)
    if not finished.is_set() or not status:
        return None
    return status[0], headers, b"".join(chunks)


# -- the cluster -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChaosParams:
    """One scenario's shape; `replicas` is R (W is its majority)."""

    nodes: int = 3
    # Nodes outside the founding cluster that a "join" fault starts; a
    # "decommission" fault drains a node once more than R nodes hold data.
    spares: int = 1
    replicas: int = 3
    clients: int = 3
    paths: int = 6
    ops_per_client: int = 12
    workload_seconds: float = 20.0
    settle_seconds: float = 20.0
    # How long the healed cluster gets for the layout to come to rest (every
    # slot where its layout wants it) after a join or decommission.
    movement_seconds: float = 120.0
    max_skew: float = 3600.0
    total_slots: int = 64
    membership: tuple[tuple[str, float | int | bool], ...] = ()
    # The storage shape (the planted-divergence suite cuts objects into
    # several small parts) and how often anti-entropy runs in the background
    # (0: only the rounds a test calls).
    part_size: int = 8 * 1024 * 1024
    inline_max_bytes: int = 64 * 1024
    repair_interval: float = 60.0
    # A planted bug, to show the suite catches data loss: a crashed node
    # comes back on an empty disk.
    forget_disk_on_crash: bool = False


class ChaosCluster:
    """N full nodes over a `SimWorld`. Build it inside a trio run driven by a
    MockClock; use as `async with`."""

    def __init__(self, base_dir: Path, params: ChaosParams, rng: random.Random,
                 link: LinkProfile) -> None:
        self.params = params
        self._rng = rng
        self.world = SimWorld(random.Random(rng.getrandbits(64)), link)
        self.t0 = trio.current_time()
        specs = []
        for i in range(params.nodes + params.spares):
            address = Address(f"10.0.0.{i + 1}", 7000)
            specs.append(NodeSpec(f"n{i + 1}", address, address, (base_dir / f"n{i + 1}",)))
        self.founders = [s.node_id for s in specs[:params.nodes]]
        self.cluster = ClusterConfig(
            name="chaos", nodes=tuple(specs[:params.nodes]),
            replication=ReplicationConfig(replicas=params.replicas,
                                          total_slots=params.total_slots),
            storage=StorageConfig(gc_interval_seconds=3600.0, io_threads=1,
                                  part_size_bytes=params.part_size,
                                  inline_max_bytes=params.inline_max_bytes),
            repair=RepairConfig(interval_seconds=params.repair_interval),
            insecure=True,
            membership=params.membership,
        )
        self.skew = {s.node_id: rng.uniform(-params.max_skew, params.max_skew) for s in specs}
        self.applied: list[Applied] = []
        self._specs = {s.node_id: s for s in specs}
        self.hosts: dict[str, _Host] = {}
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None

    @property
    def node_ids(self) -> list[str]:
        """Every node, founders and spares (a spare refuses connections until
        a "join" fault starts it)."""
        return list(self._specs)

    def spare(self) -> str | None:
        """A spare that has never been started, if any is left."""
        return next((n for n in self._specs if n not in self.founders
                     and n not in self.hosts), None)

    def address(self, node_id: str) -> str:
        return str(self._specs[node_id].advertise_addr)

    def now(self) -> float:
        return trio.current_time() - self.t0

    async def __aenter__(self) -> ChaosCluster:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        for node_id in self.founders:
            await self.start(node_id)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        for node_id in self.hosts:
            self.crash(node_id)
        result: bool | None = await self._nursery_cm.__aexit__(*exc)
        return result

    # -- life cycle ------------------------------------------------------------------

    async def start(self, node_id: str) -> None:
        """Start (or restart on its disk) one node."""
        assert self._nursery is not None
        address = self.address(node_id)
        old = self.hosts.get(node_id)
        if old is not None and old.node is not None:
            raise RuntimeError(f"{node_id} is running")
        host = _Host(node_id, address)
        self.hosts[node_id] = host
        self.world.hosts[address] = host
        await self._nursery.start(self._run, host)

    async def _run(self, host: _Host, *, task_status: trio.TaskStatus[None]) -> None:
        spec = self._specs[host.node_id]
        cluster, seeds = self.cluster, tuple[str, ...]()
        if host.node_id not in self.founders:
            # a joiner knows the founders and itself, and enters through them
            # (on a restart its persisted layout is used instead)
            cluster = replace(cluster, nodes=(*cluster.nodes, spec))
            seeds = tuple(self.address(n) for n in self.founders)
        config = NodeConfig(cluster=cluster, spec=spec)
        skew = self.skew[host.node_id]

        def wall_clock() -> float:
            return EPOCH + trio.current_time() + skew

        io = InMemoryIO(peer_transport=SimHttpTransport(host.address, self.world),
                        wall_clock=wall_clock, rng=random.Random(self._rng.getrandbits(64)))
        try:
            with trio.CancelScope() as scope:
                host.scope = scope
                node = Node(config, in_memory=io, seeds=seeds,
                            make_transport=lambda a, _keys: SimGossipTransport(a, self.world))
                node.store.on_applied = self._observer(host.node_id)
                async with node, trio.open_nursery() as requests:
                    host.node, host.requests = node, requests
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            host.node = host.requests = None
            host.done.set()

    def _observer(self, node_id: str) -> Callable[[int, str, int], None]:
        def applied(slot: int, path: str, generation: int) -> None:
            self.applied.append(Applied(node_id, path, generation))
        return applied

    def running(self, node_id: str) -> bool:
        host = self.hosts.get(node_id)
        return host is not None and host.node is not None

    def crash(self, node_id: str) -> None:
        """Cancel the node abruptly: no leave, in-flight requests cut off."""
        host = self.hosts.get(node_id)
        if host is not None and host.scope is not None:
            host.scope.cancel()

    async def restart(self, node_id: str) -> None:
        host = self.hosts[node_id]
        self.crash(node_id)
        await host.done.wait()
        if self.params.forget_disk_on_crash:
            for disk in self._specs[node_id].disks:
                shutil.rmtree(disk, ignore_errors=True)
        await self.start(node_id)

    def pause(self, node_id: str) -> None:
        host = self.hosts[node_id]
        if host.paused or host.membership is None:
            return
        host.paused, host.resumed = True, trio.Event()
        host.membership.pause()

    def resume(self, node_id: str) -> None:
        host = self.hosts[node_id]
        if not host.paused:
            return
        host.paused = False
        host.resumed.set()
        if host.membership is not None:
            host.membership.resume()

    def partition(self, a: list[str], b: list[str], *, one_way: bool = False) -> None:
        self.world.net.partition([self.address(x) for x in a], [self.address(y) for y in b],
                                 one_way=one_way)

    def heal(self) -> None:
        self.world.net.heal()
        self.world.net.default = replace(self.world.net.default, loss=0.0)

    def set_loss(self, loss: float) -> None:
        self.world.net.default = replace(self.world.net.default, loss=loss)

    def client(self, name: str, timeout: float = 10.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=SimHttpTransport(name, self.world), timeout=timeout)

    def layout(self, node_id: str) -> Layout:
        node = self.hosts[node_id].node
        assert node is not None and node.layout is not None
        return node.layout.current

    def final_layout(self) -> Layout:
        """The layout the running nodes agree on (the first founder's view)."""
        return self.layout(self.founders[0])

    def layout_at_rest(self) -> bool:
        """Every running node has the same layout, and no slot is moving."""
        up = [n for n in self.hosts if self.running(n)]
        layouts = [self.layout(n) for n in up]
        return len({lay.digest for lay in layouts}) == 1 and layouts[0].moving_slots() == 0

    async def join(self) -> str | None:
        """Start a spare that enters the cluster (None: no spare left)."""
        spare = self.spare()
        if spare is not None:
            await self.start(spare)
        return spare

    async def decommission(self, victim: str, via: str) -> bool:
        """Drain `victim` through `via`'s layout; False when the layout (as
        `via` sees it) would keep fewer than R targets, or refuses."""
        node = self.hosts[via].node
        if node is None or node.layout is None:
            return False
        layout = node.layout.current
        targets = [n for n in layout.members if layout.role(n) in (Role.JOINING, Role.ACTIVE)]
        if victim not in targets or len(targets) <= self.params.replicas:
            return False
        try:
            await node.layout.update(lambda lay: lay.decommission(victim))
        except LayoutError:
            return False
        return True

    def converged(self) -> bool:
        """Every running node sees every running node alive."""
        up = [n for n in self.hosts if self.running(n)]
        for observer in up:
            membership = self.hosts[observer].membership
            assert membership is not None
            view = {m.node_id: m.status.counts_as_alive for m in membership.members()}
            if not all(view.get(n, False) for n in up if n != observer):
                return False
        return True

    # -- final state -----------------------------------------------------------------

    async def replica_heads(self, layout: Layout) -> dict[str, dict[int, list[Head]]]:
        """Each node's heads of the slots it holds under `layout`: a copy the
        layout no longer counts (a drained node's leftovers) is not a replica,
        so it cannot stand in for a lost write."""
        out: dict[str, dict[int, list[Head]]] = {}
        for node_id, host in self.hosts.items():
            assert host.node is not None
            heads = await host.node.store.list_heads("", None, 1_000_000, include_deleted=True)
            by_slot: dict[int, list[Head]] = defaultdict(list)
            for head in heads:
                if node_id in layout.holders(head.slot_id):
                    by_slot[head.slot_id].append(head)
            out[node_id] = dict(by_slot)
        return out


# -- the workload ------------------------------------------------------------------


def _blob_url(cluster: ChaosCluster, node_id: str, path: str) -> str:
    return f"http://{cluster.address(node_id)}/api/v1/blobs/{quote(path)}"


def _outcome_of_error(kind: OpKind, exc: httpx.HTTPError) -> Outcome:
    """A request that never reached the node did not happen; one that may have
    reached it is unknown for a write (a read changes nothing either way)."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Outcome.FAILED
    return Outcome.UNKNOWN if kind in (OpKind.PUT, OpKind.DELETE) else Outcome.FAILED


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


class Workload:
    """Clients issuing seeded operations to random nodes; records the history."""

    def __init__(self, cluster: ChaosCluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.ops: list[Op] = []
        self._next_id = 0
        self.paths = [f"p/{i}" for i in range(cluster.params.paths)]

    async def run_client(self, name: str, rng: random.Random) -> None:
        params = self.cluster.params
        async with self.cluster.client(name) as http:
            for _ in range(params.ops_per_client):
                await trio.sleep(rng.expovariate(params.ops_per_client
                                                 / params.workload_seconds))
                await self.one(http, name, rng)

    async def one(self, http: httpx.AsyncClient, client: str, rng: random.Random) -> None:
        kind = rng.choices(list(OpKind), weights=[5, 2, 4, 1])[0]
        node = rng.choice(self.cluster.node_ids)
        path = rng.choice(self.paths)
        op_id = self._next_id
        self._next_id += 1
        invoked = self.cluster.now()
        fields: dict[str, Any] = {}
        try:
            if kind is OpKind.PUT:
                data = rng.randbytes(rng.randint(0, 64))
                fields["sent_etag"] = hashlib.sha256(data).hexdigest()
                r = await http.put(_blob_url(self.cluster, node, path), content=data,
                                   headers={"X-Rimio-Write-Id": f"{client}-{op_id}"})
                outcome = self._write_outcome(r, 201, fields, deleted=False)
            elif kind is OpKind.DELETE:
                r = await http.delete(_blob_url(self.cluster, node, path),
                                      headers={"X-Rimio-Write-Id": f"{client}-{op_id}"})
                outcome = self._write_outcome(r, 200, fields, deleted=True)
            elif kind is OpKind.GET:
                r = await http.get(_blob_url(self.cluster, node, path))
                outcome = self._read_outcome(r, fields)
            else:
                path = "p/"
                r = await http.get(f"http://{self.cluster.address(node)}/api/v1/blobs",
                                   params={"prefix": path, "include_deleted": "true",
                                           "limit": "1000"})
                outcome = self._list_outcome(r, fields)
            fields["status"] = r.status_code
        except httpx.HTTPError as exc:
            outcome = _outcome_of_error(kind, exc)
        self.ops.append(Op(op_id, kind, path, node, invoked, self.cluster.now(), outcome,
                           client=client, **fields))

    @staticmethod
    def _write_outcome(r: httpx.Response, ok: int, fields: dict[str, Any], *,
                       deleted: bool) -> Outcome:
        if r.status_code in (ok, 200):
            body = r.json()
            fields["version"] = Version(int(body["generation"]), deleted,
                                        "" if deleted else str(body["etag"]))
            return Outcome.OK
        if r.status_code == 503 and _error_code(r) == "outcome_unknown":
            return Outcome.UNKNOWN
        return Outcome.FAILED

    @staticmethod
    def _read_outcome(r: httpx.Response, fields: dict[str, Any]) -> Outcome:
        fields["degraded"] = r.headers.get("x-rimio-read-quorum") == "degraded"
        if r.status_code == 200:
            fields["version"] = Version(int(r.headers["x-rimio-generation"]), False,
                                        r.headers["etag"].strip('"'))
            fields["body_etag"] = hashlib.sha256(r.content).hexdigest()
            return Outcome.OK
        if r.status_code == 404:
            fields["version"] = ABSENT
            return Outcome.OK
        if r.status_code == 410:
            fields["version"] = Version(int(r.headers.get("x-rimio-generation", 0)), True)
            return Outcome.OK
        return Outcome.FAILED

    @staticmethod
    def _list_outcome(r: httpx.Response, fields: dict[str, Any]) -> Outcome:
        if r.status_code != 200:
            return Outcome.FAILED
        fields["degraded"] = r.headers.get("x-rimio-read-quorum") == "degraded"
        fields["listing"] = tuple(
            (item["path"], Version(int(item["generation"]), bool(item["deleted"]),
                                   "" if item["deleted"] else str(item["etag"] or "")))
            for item in r.json()["items"])
        return Outcome.OK


# -- faults ------------------------------------------------------------------------

FAULTS = ("partition", "one_way", "pause", "crash", "loss", "join", "decommission", "none")


async def fault_schedule(cluster: ChaosCluster, rng: random.Random, log: list[str]) -> None:
    """Seeded faults during the workload; each is undone a little later."""
    end = cluster.params.workload_seconds
    while cluster.now() < end:
        await trio.sleep(rng.uniform(1.0, 6.0))
        ids = list(cluster.hosts)  # the nodes started so far
        fault = rng.choice(FAULTS)
        victim = rng.choice(ids)
        hold = rng.uniform(1.0, 8.0)
        if fault == "join":
            # permanent: the spare stays (and its slots move to it)
            joined = await cluster.join()
            log.append(f"{cluster.now():.3f} join {joined or '(no spare left)'}")
            continue
        if fault == "decommission":
            via = rng.choice(ids)
            done = await cluster.decommission(victim, via)
            log.append(f"{cluster.now():.3f} decommission {victim} via {via}"
                       + ("" if done else " (refused)"))
            continue
        log.append(f"{cluster.now():.3f} {fault} {victim}")
        if fault in ("partition", "one_way"):
            side = [victim, *rng.sample([x for x in ids if x != victim],
                                        rng.randint(0, max(0, len(ids) - 2)))]
            cluster.partition(side, [x for x in ids if x not in side],
                              one_way=fault == "one_way")
            await trio.sleep(hold)
            cluster.world.net.heal()
        elif fault == "pause":
            cluster.pause(victim)
            await trio.sleep(hold)
            cluster.resume(victim)
        elif fault == "crash" and cluster.running(victim):
            cluster.crash(victim)
            await trio.sleep(hold)
            await cluster.restart(victim)
        elif fault == "loss":
            cluster.set_loss(rng.choice([0.05, 0.2, 0.5]))
            await trio.sleep(hold)
            cluster.set_loss(0.0)
        log.append(f"{cluster.now():.3f} undo {fault} {victim}")


# -- one seed ----------------------------------------------------------------------


@dataclass(slots=True)
class ChaosResult:
    seed: int
    history: History
    violations: list[Violation]
    faults: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """SHA-256 of the whole history: equal for runs that went identically."""
        text = repr((self.history, self.faults))
        return hashlib.sha256(text.encode()).hexdigest()

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for op in self.history.ops:
            counts[f"{op.kind}:{op.outcome}"] += 1
        return dict(sorted(counts.items()))

    def report(self) -> str:
        lines = [f"seed {self.seed}: {len(self.violations)} violation(s)",
                 *(str(v) for v in self.violations),
                 f"faults: {'; '.join(self.faults)}",
                 f"replay: {replay_command(self.seed)}"]
        return "\n".join(lines)


# Rounds of anti-entropy every node runs once the cluster has healed and
# settled, before the replicas' heads are collected (each round compares a
# node with every peer; RFC 0014 says one round converges a pair).
ANTI_ENTROPY_ROUNDS = 2


def replay_command(seed: int) -> str:
    return f"python -m pytest tests/sim/test_chaos.py -p no:cacheprovider --chaos-seed {seed}"


async def _final_reads(cluster: ChaosCluster, paths: list[str]) -> list[FinalRead]:
    """Each path read through every node; the first answer that says
    something is the path's final read. Read after the replicas' heads were
    collected: the read repair these reads start plays no part in whether
    the replicas converged (anti-entropy must do that alone)."""
    out = []
    async with cluster.client("checker") as http:
        for path in paths:
            found = False
            for node in list(cluster.hosts):
                r = await http.get(_blob_url(cluster, node, path))
                if found:
                    continue
                found = r.status_code in (200, 404, 410)
                if r.status_code == 200:
                    out.append(FinalRead(path, Version(int(r.headers["x-rimio-generation"]),
                                                       False, r.headers["etag"].strip('"')),
                                         hashlib.sha256(r.content).hexdigest()))
                elif r.status_code == 404:
                    out.append(FinalRead(path, ABSENT))
                elif r.status_code == 410:
                    out.append(FinalRead(path, Version(
                        int(r.headers.get("x-rimio-generation", 0)), True)))
    return out


async def play(seed: int, base_dir: Path, params: ChaosParams) -> ChaosResult:
    """One scenario inside a running trio loop (under a MockClock)."""
    rng = random.Random(seed)
    link = LinkProfile(latency=0.001, jitter=rng.choice([0.0, 0.005, 0.05]))
    async with ChaosCluster(base_dir, params, random.Random(rng.getrandbits(64)),
                            link) as cluster:
        workload = Workload(cluster, random.Random(rng.getrandbits(64)))
        faults: list[str] = []
        fault_rng = random.Random(rng.getrandbits(64))
        client_rngs = [random.Random(rng.getrandbits(64)) for _ in range(params.clients)]
        await trio.sleep(2.0)  # let membership form
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fault_schedule, cluster, fault_rng, faults)
            for i, client_rng in enumerate(client_rngs):
                nursery.start_soon(workload.run_client, f"c{i}", client_rng)
        # heal: every fault undone, crashed nodes back, then quiet
        cluster.heal()
        for node_id in list(cluster.hosts):
            cluster.resume(node_id)
            if not cluster.running(node_id):
                await cluster.restart(node_id)
        deadline = cluster.now() + params.settle_seconds
        while cluster.now() < deadline and not cluster.converged():  # noqa: ASYNC110
            await trio.sleep(0.5)
        deadline = cluster.now() + params.movement_seconds
        while cluster.now() < deadline and not cluster.layout_at_rest():  # noqa: ASYNC110
            await trio.sleep(0.5)
        at_rest = cluster.layout_at_rest()
        await trio.sleep(1.0)
        # Anti-entropy alone brings every replica up to date (RFC 0014): a
        # few rounds on every node, with no client read involved; only then
        # are the replicas' heads collected and the paths read.
        for _ in range(ANTI_ENTROPY_ROUNDS):
            for node_id in list(cluster.hosts):
                node = cluster.hosts[node_id].node
                if node is not None and node.antientropy is not None:
                    await node.antientropy.round()
        layout = cluster.final_layout()
        replicas = await cluster.replica_heads(layout)
        final_reads = await _final_reads(cluster, workload.paths)
        slots = sorted({s for by_slot in replicas.values() for s in by_slot})
        history = History(
            ops=sorted(workload.ops, key=lambda op: op.op_id),
            replicas=replicas,
            replica_sets={s: list(layout.holders(s)) for s in slots},
            final_reads=final_reads,
            applied=list(cluster.applied),
        )
    violations = check(history)
    if not at_rest:
        violations.append(Violation(
            "layout_not_at_rest", "", f"slots still moving {params.movement_seconds} s "
            f"after healing (layout version {layout.version}, "
            f"{layout.moving_slots()} moving)"))
    return ChaosResult(seed, history, violations, faults)


def run_seed(seed: int, params: ChaosParams | None = None, base_dir: Path | None = None
             ) -> ChaosResult:
    """Play one seed in its own trio run under a MockClock (see the module
    docstring for what makes it deterministic)."""
    params = params or ChaosParams()
    own = base_dir is None
    root = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-", dir=_scratch())) if own else base_dir
    assert root is not None
    # The cyclic garbage collector would run finalizers (of async generators,
    # which trio turns into tasks) at points that depend on what earlier runs
    # left behind: collect it now and keep it off during the run.
    gc.collect()
    gc.disable()
    try:
        seed_trio_scheduler(seed)
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(play, seed, root, params, clock=clock)
    finally:
        gc.enable()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _scratch() -> str | None:
    """Memory-backed scratch space when there is some: the nodes' fsyncs are
    part of the code under test, not of what the suite measures."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None
