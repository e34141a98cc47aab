"""In-process cluster harness for tests and for programs that embed Rimio.

`LocalCluster` runs N real `Node`s in one trio program, each with its own
data directory and loopback port, and gossip over either transport:

* ``transport="http"`` — the real `HttpTransport` on each node's one port;
* ``transport="memory"`` — frames are handed to the peer's membership
  service in-process (no sockets for gossip; the public API stays HTTP).

Both go through a `FaultPlan` shared by the cluster: per-link latency, loss,
duplication, one-way and two-way partitions, and paused nodes (frames to and
from a paused node are held until it resumes — the in-process stand-in for a
stalled event loop). Nodes can be crashed (cancelled without a leave),
stopped gracefully, restarted on the same disk, and new nodes joined.

Like any cluster, it is keyed: without a `key_file` it makes one,
`base_dir/cluster.key`, unless told `insecure=True`.

The harness runs in real time; for deterministic, seeded simulation of the
protocol itself under `trio.testing.MockClock`, use `rimio.net.sim`.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trio

from rimio.config import (
    Address,
    ClusterConfig,
    NodeConfig,
    NodeSpec,
    RepairConfig,
    ReplicationConfig,
    StorageConfig,
    ensure_key_file,
)
from rimio.core.frames import Status
from rimio.core.keyring import KeyRing
from rimio.net.http import HttpTransport, signed_headers
from rimio.net.sim import LinkProfile, partition_links
from rimio.net.transport import Receiver, Transport, TransportError
from rimio.node import Node

__all__ = ["FaultPlan", "FaultyTransport", "LinkProfile", "LocalCluster", "MemoryTransport"]

FAST_MEMBERSHIP: dict[str, float | int | bool] = {
    "probe_interval": 0.2, "probe_timeout": 0.1, "gossip_interval": 0.05,
    "push_pull_interval": 2.0, "reconnect_interval": 1.0, "suspicion_mult": 2,
}
"""Membership timings about 5x faster than memberlist's LAN profile, for tests."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class FaultPlan:
    """What the network does to frames between addresses. Seeded."""

    seed: int = 0
    default: LinkProfile = field(default_factory=lambda: LinkProfile(latency=0.0, jitter=0.0))
    links: dict[tuple[str, str], LinkProfile] = field(default_factory=dict)
    blocked: set[tuple[str, str]] = field(default_factory=set)
    paused: dict[str, trio.Event] = field(default_factory=dict)
    rng: random.Random = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def partition(self, a: list[str], b: list[str], *, one_way: bool = False) -> None:
        self.blocked |= partition_links(a, b, one_way=one_way)

    def heal(self) -> None:
        self.blocked.clear()

    def delays(self, src: str, dst: str) -> list[float]:
        """One delay per copy to deliver; empty when the frame is lost."""
        if (src, dst) in self.blocked:
            self.dropped += 1
            return []
        link = self.links.get((src, dst), self.default)
        if link.loss and self.rng.random() < link.loss:
            self.dropped += 1
            return []
        copies = 2 if link.duplicate and self.rng.random() < link.duplicate else 1
        out = []
        for _ in range(copies):
            d = link.latency + self.rng.uniform(0.0, link.jitter)
            if link.reorder and self.rng.random() < link.reorder:
                d += self.rng.uniform(0.0, link.reorder_delay)
            out.append(d)
        return out

    async def wait_unpaused(self, *addresses: str) -> None:
        for a in addresses:
            event = self.paused.get(a)
            if event is not None:
                await event.wait()


class MemoryTransport:
    """Hands frames straight to the receiver at the target address (in a
    `LocalCluster`, that node's membership service)."""

    def __init__(self, address: str, receiver_at: Callable[[str], Receiver | None]) -> None:
        self._address = address
        self._receiver_at = receiver_at
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    def _target(self, address: str) -> Receiver:
        if self._closed:
            raise TransportError(f"{address}: the transport is closed")
        receiver = self._receiver_at(address)
        if receiver is None:
            raise TransportError(f"{address}: no node there")
        return receiver

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        await trio.lowlevel.checkpoint()
        self._target(address).deliver_packet(self._address, data, trio.current_time())

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        await trio.lowlevel.checkpoint()
        reply = self._target(address).answer_stream(self._address, data, trio.current_time())
        return reply or b""

    async def aclose(self) -> None:
        self._closed = True


class FaultyTransport:
    """Wraps a transport with a `FaultPlan`: loss and partitions look like
    silence to packets and like errors to streams, as they would on a LAN.
    It sends from the address of the transport it wraps."""

    def __init__(self, inner: Transport, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    @property
    def address(self) -> str:
        return self.inner.address

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        await self.plan.wait_unpaused(self.address, address)
        delays = self.plan.delays(self.address, address)
        for delay in delays:
            if delay > 0:
                await trio.sleep(delay)
            await self.inner.send_packet(address, data, node=node)

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        await self.plan.wait_unpaused(self.address, address)
        delays = self.plan.delays(self.address, address)
        if not delays:
            raise TransportError(f"{address}: unreachable (fault plan)")
        if delays[0] > 0:
            await trio.sleep(delays[0])
        return await self.inner.request_stream(address, data, node=node)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class _Slot:
    spec: NodeSpec
    node: Node | None = None
    scope: trio.CancelScope | None = None
    stop: trio.Event | None = None
    done: trio.Event | None = None
    seeds: tuple[str, ...] = ()


class LocalCluster:
    """N nodes in this trio program. Use as `async with LocalCluster(...) as c:`."""

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        *,
        transport: str = "http",
        seed: int = 0,
        membership: dict[str, float | int | bool] | None = None,
        replicas: int = 1,
        name: str = "local",
        key_file: Path | None = None,
        insecure: bool = False,
        total_slots: int | None = None,
        storage: StorageConfig | None = None,
        repair: RepairConfig | None = None,
    ) -> None:
        if transport not in ("http", "memory"):
            raise ValueError("transport must be 'http' or 'memory'")
        self.base_dir = Path(base_dir)
        if key_file is None and not insecure:
            key_file = self.base_dir / "cluster.key"
            ensure_key_file(key_file)
        self.transport = transport
        self.plan = FaultPlan(seed=seed)
        specs = [self._spec(f"node-{i + 1}") for i in range(size)]
        overrides = dict(FAST_MEMBERSHIP if membership is None else membership)
        self.cluster = ClusterConfig(
            name=name, nodes=tuple(specs),
            replication=ReplicationConfig(
                replicas=replicas, min_write_replicas=None,
                **({} if total_slots is None else {"total_slots": total_slots})),
            storage=storage or StorageConfig(gc_interval_seconds=3600.0),
            repair=repair or RepairConfig(),
            key_file=key_file,
            insecure=insecure,
            membership=tuple(sorted(overrides.items())),
        )
        self._slots: dict[str, _Slot] = {s.node_id: _Slot(s) for s in specs}
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None

    def _spec(self, node_id: str) -> NodeSpec:
        addr = Address("127.0.0.1", free_port())
        return NodeSpec(node_id, addr, addr, (self.base_dir / node_id,))

    # -- life cycle --------------------------------------------------------------

    async def __aenter__(self) -> LocalCluster:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        try:
            async with trio.open_nursery() as starting:
                for node_id in self._slots:
                    starting.start_soon(self.start, node_id)
        except BaseException as exc:
            self._nursery.cancel_scope.cancel()
            await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        for node_id in list(self._slots):
            self.crash(node_id)
        result: bool | None = await self._nursery_cm.__aexit__(exc_type, exc, tb)
        return result

    def _make_transport(self, address: str, keyring: KeyRing | None) -> Transport:
        """A node's gossip transport (sealed with the node's own ring), through
        the cluster's fault plan."""
        inner: Transport
        if self.transport == "memory":
            inner = MemoryTransport(address, self.membership_at)
        else:
            inner = HttpTransport(address, keyring=keyring, packet_timeout=0.5)
        return FaultyTransport(inner, self.plan)

    def node_at(self, address: str) -> Node | None:
        for slot in self._slots.values():
            if slot.node is not None and str(slot.spec.advertise_addr) == address:
                return slot.node
        return None

    def membership_at(self, address: str) -> Receiver | None:
        node = self.node_at(address)
        return None if node is None else node.membership

    async def start(self, node_id: str) -> Node:
        """Start (or restart, on the same disk and port) one node."""
        assert self._nursery is not None
        slot = self._slots[node_id]
        if slot.node is not None:
            raise RuntimeError(f"{node_id} is running")
        node: Node = await self._nursery.start(self._run, slot)
        return node

    async def _run(self, slot: _Slot, *, task_status: trio.TaskStatus[Node]) -> None:
        cluster = replace(self.cluster, nodes=tuple(
            s.spec for s in self._slots.values()))
        config = NodeConfig(cluster=cluster, spec=slot.spec)
        slot.stop, slot.done = trio.Event(), trio.Event()
        try:
            with trio.CancelScope() as scope:
                slot.scope = scope
                async with Node(config, seeds=slot.seeds,
                                make_transport=self._make_transport) as node:
                    slot.node = node
                    task_status.started(node)
                    await slot.stop.wait()
        finally:
            slot.node = None
            slot.done.set()

    def crash(self, node_id: str) -> None:
        """Stop a node abruptly: no leave, in-flight work cancelled."""
        slot = self._slots[node_id]
        if slot.scope is not None:
            slot.scope.cancel()

    async def stop(self, node_id: str) -> None:
        """Stop a node gracefully: it announces its leave."""
        slot = self._slots[node_id]
        if slot.stop is not None and slot.done is not None:
            slot.stop.set()
            await slot.done.wait()

    async def wait_down(self, node_id: str) -> None:
        slot = self._slots[node_id]
        if slot.done is not None:
            await slot.done.wait()

    async def add_node(self, node_id: str | None = None) -> Node:
        """Start a new node that joins through the running ones' addresses."""
        node_id = node_id or f"node-{len(self._slots) + 1}"
        seeds = tuple(str(s.spec.advertise_addr) for s in self._slots.values()
                      if s.node is not None)
        slot = _Slot(self._spec(node_id), seeds=seeds)
        self._slots[node_id] = slot
        return await self.start(node_id)

    # -- faults ------------------------------------------------------------------

    def address(self, node_id: str) -> str:
        return str(self._slots[node_id].spec.advertise_addr)

    def partition(self, a: list[str], b: list[str], *, one_way: bool = False) -> None:
        self.plan.partition([self.address(x) for x in a], [self.address(y) for y in b],
                            one_way=one_way)

    def heal(self) -> None:
        self.plan.heal()

    def set_loss(self, loss: float) -> None:
        self.plan.default = replace(self.plan.default, loss=loss)

    def pause(self, node_id: str) -> None:
        self.plan.paused[self.address(node_id)] = trio.Event()

    def resume(self, node_id: str) -> None:
        event = self.plan.paused.pop(self.address(node_id), None)
        if event is not None:
            event.set()

    # -- observation -------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, Node]:
        return {k: s.node for k, s in self._slots.items() if s.node is not None}

    def view(self, observer: str) -> dict[str, Status]:
        node = self.nodes.get(observer)
        if node is None or node.membership is None:
            return {}
        return {m.node_id: m.status for m in node.membership.members()}

    def agree(self, statuses: dict[str, Status], observers: list[str] | None = None) -> bool:
        """True when every running observer sees each listed node as given."""
        for obs in observers or list(self.nodes):
            view = self.view(obs)
            if any(view.get(n) is not s for n, s in statuses.items() if n != obs):
                return False
        return True

    async def internal_stats(self, node_id: str) -> dict[str, Any]:
        """`GET /internal/v1/stats` of a running node, signed with the cluster key."""
        node = self.nodes[node_id]
        target = "/internal/v1/stats"
        headers = signed_headers(self.cluster.keyring(), "GET", target, b"",
                                 destination=node_id)
        async with httpx.AsyncClient(timeout=30) as client:
            answer: dict[str, Any] = (await client.get(node.url + target,
                                                       headers=headers)).json()
        return answer

    async def wait_for(self, predicate: Callable[[], bool], within: float,
                       interval: float = 0.05) -> None:
        """Poll `predicate` until it holds; `trio.TooSlowError` after `within` s."""
        with trio.fail_after(within):
            while not predicate():  # noqa: ASYNC110 - polling views is the point
                await trio.sleep(interval)
