"""`Node`: one Rimio node, composed under one trio nursery.

`async with Node(config) as node:` checks the configuration's disks (refusing
a missing, unmounted or foreign one, RFC 0012) and port, claims the disks
(their locks and identity files), opens the store (cleaning up interrupted
writes), starts the HTTP server on the node's one port and the background
tasks; leaving the block stops accepting, lets in-flight requests finish (up
to the graceful timeout) and closes the store. Tests, `rimio start` and
embedding programs all use it.

The listening socket is bound first, so the node's address is final (even on
port 0) before any part that needs it is built: each part gets what it needs
at construction, and the already-bound socket is handed to hypercorn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from rimio.api.access import with_access
from rimio.api.app import NodeView, create_app
from rimio.api.connections import cap_connections
from rimio.api.limits import RequestLimits
from rimio.api.status import StatusSections
from rimio.cluster.layout import (
    DEFAULT_EXCHANGE_INTERVAL,
    LAYOUT_FILE,
    LayoutJoinError,
    LayoutService,
    empty_layout,
    founding_layout,
    write_layout_file,
)
from rimio.cluster.layout_client import LayoutClient
from rimio.cluster.membership import MembershipService
from rimio.cluster.peers import PeerClient
from rimio.cluster.replicas import HttpReplica
from rimio.config import Address, NodeConfig, load_keyring
from rimio.core.absence import Absence
from rimio.core.frames import FrameError, Status
from rimio.core.keyring import KeyRing
from rimio.core.replica import Replica, ReplicaUnavailable
from rimio.errors import ConfigError
from rimio.net.http import HttpTransport
from rimio.net.transport import Transport
from rimio.ops.antientropy import AntiEntropy, AntiEntropySettings
from rimio.ops.coordinator import Coordinator, settings_for
from rimio.ops.movement import SlotMover
from rimio.ops.objects import ObjectService
from rimio.ops.replica_service import ReplicaService
from rimio.ops.scrub import Scrubber, ScrubSettings
from rimio.ops.tombstones import TombstonePurger
from rimio.storage.disk import check_disk_usable, claim_disk, lock_disk
from rimio.storage.disk_identity import check_disks, claim_identities
from rimio.storage.gc import GcPolicy
from rimio.storage.replica import LocalReplica
from rimio.storage.store import LocalStore

log = logging.getLogger("rimio.node")

TransportFactory = Callable[[str, KeyRing | None], Transport]
"""Builds a node's gossip transport from the node's final address and its key
ring (the node's one ring, so a SIGHUP reload reaches the transport too)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InMemoryIO:
    """What a node uses instead of sockets, worker threads and the host's
    clock when it runs inside a deterministic simulation (`rimio.testing.chaos`).

    With it the node binds no port and runs no HTTP server: its ASGI app is
    `Node.app`, which the simulated network calls. `peer_transport` carries
    its requests to other nodes, `wall_clock` is its (possibly skewed) clock,
    `rng` seeds its membership, and disk work runs on the trio thread.
    """

    peer_transport: httpx.AsyncBaseTransport
    wall_clock: Callable[[], float]
    rng: random.Random


def bind_listener(addr: Address) -> socket.socket:
    """A TCP socket bound (not yet listening) to `addr`; ConfigError if it cannot be."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # as hypercorn sets them on the sockets it binds itself
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((addr.host, addr.port))
    except OSError as exc:
        sock.close()
        reason = ("address already in use" if exc.errno == errno.EADDRINUSE
                  else exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {addr}: {reason}") from None
    return sock


def check_port_free(addr: Address) -> None:
    """Raise ConfigError if the node's port cannot be bound (before anything is written)."""
    if addr.port != 0:
        bind_listener(addr).close()


class Node:
    """One Rimio node.

    `seeds` are extra gossip addresses to join through (used by `rimio join`);
    founding nodes seed from the other nodes of `initial_cluster`. A node
    given seeds is `joining` (unless told otherwise): on its first start it
    enters the shared layout through the other nodes of its configuration
    instead of computing the founding layout.
    `make_transport` replaces the HTTP gossip transport (the test harness uses
    it): it is called with the node's final address and key ring, and the node closes what
    it returns.
    """

    def __init__(self, config: NodeConfig, *, seeds: Sequence[str] = (),
                 make_transport: TransportFactory | None = None,
                 joining: bool | None = None,
                 in_memory: InMemoryIO | None = None) -> None:
        config.cluster.check_keyed()
        self.config = config
        self._extra_seeds = list(seeds)
        self._joining = bool(seeds) if joining is None else joining
        self._make_transport = make_transport
        self._in_memory = in_memory
        self._wall_clock = in_memory.wall_clock if in_memory is not None else time.time
        # One ring object for the node's lifetime: the gossip sealing, the peer
        # client and the internal-API verifier all read it at each use, and
        # `reload_keys` swaps its keys in place.
        self.keyring = config.cluster.keyring()
        storage = config.cluster.storage
        self.store = LocalStore(
            config.spec.disks,
            total_slots=config.cluster.replication.total_slots,
            part_size=storage.part_size_bytes,
            io_threads=storage.io_threads,
            max_open_slots=storage.max_open_slots,
            inline_max_bytes=storage.inline_max_bytes,
            read_cache_bytes=storage.read_cache_bytes,
            read_cache_max_object_bytes=storage.read_cache_max_object_bytes,
            compression=storage.compression, compression_level=storage.compression_level,
            inline_io=in_memory is not None,
        )
        self.address: Address = config.spec.advertise_addr
        # Built by `__aenter__`, once the address is final.
        self.membership: MembershipService | None = None
        self.objects: ObjectService | None = None
        self.layout: LayoutService | None = None
        self.replica: LocalReplica | None = None
        self.mover: SlotMover | None = None
        self.antientropy: AntiEntropy | None = None
        self.purger: TombstonePurger | None = None
        self.scrubber: Scrubber | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._shutdown = trio.Event()
        self._background = trio.CancelScope()
        self._server_scope = trio.CancelScope()
        self._limits: RequestLimits | None = None
        self._app: Any = None
        # `GET /api/v1/status`: one provider per service this node runs (RFC 0018)
        self.status_sections = StatusSections()

    @property
    def app(self) -> Any:
        """The node's ASGI app (what its HTTP server serves); set once entered."""
        assert self._app is not None, "the node is not running"
        return self._app

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def url(self) -> str:
        host = f"[{self.address.host}]" if ":" in self.address.host else self.address.host
        return f"http://{host}:{self.address.port}"

    async def __aenter__(self) -> Node:
        started = trio.current_time()
        spec = self.config.spec
        cluster_name = self.config.cluster.name
        for disk in spec.disks:
            check_disk_usable(disk)
        # A missing, unmounted or foreign disk is refused before anything is written.
        await self._blocking(functools.partial(check_disks, spec.disks, cluster=cluster_name,
                                               node_id=self.node_id))
        # Binding is also the port check: nothing is written yet if it fails.
        listener = bind_listener(spec.bind_addr) if self._in_memory is None else None
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        if listener is not None:
            stack.callback(listener.close)  # a no-op once hypercorn owns the socket
        try:
            if listener is not None and spec.bind_addr.port == 0:
                self.address = Address(spec.advertise_addr.host, listener.getsockname()[1])
            for disk in spec.disks:
                fd = await self._blocking(lock_disk, disk)
                stack.callback(os.close, fd)
            await self._blocking(functools.partial(
                claim_identities, spec.disks, cluster=cluster_name, node_id=self.node_id,
                now=self._wall_clock()))
            await self.store.open()
            stack.push_async_callback(self.store.close)
            incarnation = await self._blocking(claim_disk, spec.disks[0], self.node_id)
            transport = self._build_transport()
            stack.push_async_callback(transport.aclose)  # after the nursery is gone
            membership = self._build_membership(transport, incarnation)
            server = self.config.cluster.server
            peers = PeerClient(self.keyring, max_connections=server.forward_pool_connections,
                               pool_timeout=server.forward_pool_timeout_seconds,
                               transport=(self._in_memory.peer_transport
                                          if self._in_memory is not None else None))
            stack.push_async_callback(peers.aclose)
            layout_client = LayoutClient(
                self.keyring, source=self.node_id,
                transport=self._in_memory.peer_transport if self._in_memory else None)
            stack.push_async_callback(layout_client.aclose)
            layout = await self._build_layout(membership, layout_client)
            storage = self.config.cluster.storage
            self.replica = LocalReplica(self.store, self.node_id, clock=self._wall_clock)
            # What this node's coordinator reads of its own replica: nothing
            # while it re-syncs after a long absence (RFC 0015 §4).
            serving = LocalReplica(self.store, self.node_id, clock=self._wall_clock,
                                   serving=lambda: not self.resyncing())
            coordinator = self._build_coordinator(layout, membership, peers, serving)
            mover = SlotMover(coordinator.ctx, layout, self.replica)
            repair = self.config.cluster.repair
            purger = TombstonePurger(coordinator.ctx, layout, self.replica,
                                     retention=repair.tombstone_retention_seconds,
                                     wall_clock=self._wall_clock)
            absence = Absence(repair.tombstone_retention_seconds,
                              await self.store.last_contact())
            antientropy = AntiEntropy(coordinator.ctx, layout, self.replica, AntiEntropySettings(
                interval=repair.interval_seconds, slot_concurrency=repair.slot_concurrency,
                bytes_per_second=float(repair.bytes_per_second),
                burst_bytes=float(min(repair.bytes_per_second, 8 * 1024 * 1024))),
                absence=absence, record_contact=self.store.record_contact,
                after_round=purger.purge_pass)
            self.purger = purger
            peers.resyncing = self.resyncing
            scrubber = Scrubber(coordinator.ctx, self.store, ScrubSettings(
                bytes_per_second=float(repair.scrub_bytes_per_second),
                interval=repair.scrub_interval_seconds), wall_clock=self._wall_clock)
            # a peer that comes back may have missed writes: compare with it now
            membership.member_listeners.append(
                lambda change: antientropy.trigger()
                if change.status is Status.ALIVE and change.node_id != self.node_id else None)
            objects = ObjectService(self.config, self.store, self._wall_clock, peers=peers,
                                    liveness=membership, placement=layout,
                                    coordinator=coordinator)
            replicas = ReplicaService(self.replica, max_object_bytes=storage.max_object_bytes,
                                      inline_max_bytes=self.store.inline_max_bytes,
                                      # looked up per request, so a test can stand in for the layout
                                      layout_version_check=lambda v: layout.check_version(v),
                                      resyncing=self.resyncing)
            view = NodeView(
                node_id=self.node_id,
                cluster=self.config.cluster,
                address=str(self.address),
                objects=objects,
                membership=membership,
                layout=layout,
                keyring=self.keyring,
                max_frame_size=self.config.cluster.swim_config().max_frame_size,
                replicas=replicas,
                status_sections=self.status_sections,
                wall_clock=self._wall_clock,
                monotonic=trio.current_time,
                started=started,
            )
            self._add_status_sections(coordinator, mover, antientropy, scrubber, purger)
            self.membership, self.objects, self.layout = membership, objects, layout
            self.mover = mover
            self.antientropy = antientropy
            self.scrubber = scrubber
            limited = RequestLimits(create_app(view), max_inflight=server.max_inflight_requests,
                                    min_body_rate=server.min_body_rate_bytes_per_second,
                                    body_grace=server.body_rate_grace_seconds)
            self._limits = limited
            access = self.config.cluster.access
            # Access control outside the limits: a request without a valid
            # token is refused before it takes an in-flight slot.
            app = with_access(limited, access.tokens if access else None)
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._app = app
            if listener is not None:
                await nursery.start(self._serve, app, self._hypercorn_config(listener))
            await nursery.start(self._run_background, membership, layout, coordinator, mover,
                                antientropy, scrubber)
        except BaseException as exc:
            self._shutdown.set()
            self._background.cancel()
            self._server_scope.cancel()
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack = stack
        log.info("node %s serving on %s", self.node_id, self.url)
        self._log_exposure()
        return self

    def resyncing(self) -> bool:
        """Whether this node re-syncs after a long absence (RFC 0015 §4): it
        serves no reads of its own replica until a round brings it in touch."""
        return self.antientropy is not None and self.antientropy.resyncing()

    def _add_status_sections(self, coordinator: Coordinator, mover: SlotMover,
                             antientropy: AntiEntropy, scrubber: Scrubber,
                             purger: TombstonePurger) -> None:
        """The services whose counters `GET /api/v1/status` reports, one line each."""
        sections = self.status_sections
        sections.add("anti_entropy", antientropy.progress)
        sections.add("read_repair", lambda: coordinator.stats()["read_repair"])
        sections.add("verify", lambda: dataclasses.asdict(self.store.verify_stats))
        sections.add("movement", mover.progress)
        sections.add("scrub", scrubber.stats)
        sections.add("gc", self.store.gc_stats)
        sections.add("tombstones", purger.progress)

    def _log_exposure(self) -> None:
        """Say once, at start, what is open to anyone who reaches the port."""
        if self.config.cluster.access is None:
            log.warning("no access section: the /api/v1 API is open to anyone who can "
                        "reach %s", self.url)
        if self.keyring is None and len(self.config.cluster.nodes) > 1:
            log.warning("no cluster key (cluster.insecure): gossip and /internal/v1 are "
                        "unauthenticated")

    def reload_keys(self) -> bool:
        """Reread the cluster key file into the node's ring (what SIGHUP does).

        Keys added to the file are accepted, and keys dropped from it refused,
        from the next frame or request on; the first key becomes the one that
        seals and signs. A file that cannot be used is reported and the keys
        in use are kept. Returns whether the keys were replaced.
        """
        key_file = self.config.cluster.key_file
        if key_file is None or self.keyring is None:
            log.info("no cluster.key_file: no keys to reload")
            return False
        try:
            fresh = load_keyring(key_file)
        except ConfigError as exc:
            log.error("keeping the keys in use: %s", exc)
            return False
        self.keyring.adopt(fresh)
        log.info("reloaded %d cluster key(s) from %s", len(fresh.mac_keys), key_file)
        return True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self.membership is not None and exc_type is None:
            with trio.move_on_after(2):
                await self.membership.leave()
        self._shutdown.set()  # stop accepting connections
        if self._limits is not None and exc_type is None:
            # In-flight requests get the graceful timeout; idle keep-alive
            # connections get nothing (hypercorn would wait for them too).
            with trio.move_on_after(self.config.cluster.server.graceful_timeout_seconds):
                await self._limits.wait_idle()
        self._server_scope.cancel()
        self._background.cancel()
        assert self._stack is not None
        return await self._stack.__aexit__(exc_type, exc, tb)

    def stop(self) -> None:
        """Begin a graceful stop; the `async with` block still has to be left."""
        self._shutdown.set()

    async def wait_stopped(self) -> None:
        await self._shutdown.wait()

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking call, in a worker thread (inline when simulated)."""
        if self._in_memory is not None:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args)

    async def _write_layout_file(self, path: Path, data: bytes) -> None:
        await self._blocking(write_layout_file, path, data)

    def _build_transport(self) -> Transport:
        address = str(self.address)
        if self._make_transport is not None:
            return self._make_transport(address, self.keyring)
        swim = self.config.cluster.swim_config()
        return HttpTransport(address, keyring=self.keyring, packet_timeout=swim.probe_timeout)

    def _build_membership(self, transport: Transport, incarnation: int) -> MembershipService:
        seeds = [str(n.advertise_addr) for n in self.config.cluster.nodes
                 if n.node_id != self.node_id and n.advertise_addr.port != 0]
        seeds += [s for s in self._extra_seeds if s not in seeds]
        return MembershipService(self.config.cluster.swim_config(), self.node_id,
                                 str(self.address), transport, seeds=seeds,
                                 keyring=self.keyring, incarnation=incarnation,
                                 rng=self._in_memory.rng if self._in_memory else None)

    async def _build_layout(self, membership: MembershipService,
                            client: LayoutClient) -> LayoutService:
        """The node's layout: the one it persisted; else, on a first start, the
        founding layout of `initial_cluster`, or for a joining node the
        cluster's layout with itself added as `joining`."""
        cluster = self.config.cluster
        swim = cluster.swim_config()
        state_file = self.config.spec.disks[0] / LAYOUT_FILE
        try:
            persisted = await self._blocking(functools.partial(
                LayoutService.load, state_file, cluster=cluster.name,
                max_frame_size=swim.max_frame_size))
        except (FrameError, OSError) as exc:
            raise ConfigError(f"{state_file} is unusable ({exc}); remove it only if this "
                              "node may compute or fetch the layout again") from None
        joining = persisted is None and self._joining
        initial = persisted or (empty_layout(cluster) if joining else founding_layout(cluster))

        def live_address(node_id: str) -> str | None:
            member = membership.member.member(node_id)
            return None if member is None else member.address

        service = LayoutService(
            self.node_id, initial, cluster=cluster.name, state_file=state_file,
            exchanger=client, reachable=membership.is_reachable, live_address=live_address,
            interval=min(DEFAULT_EXCHANGE_INTERVAL, swim.push_pull_interval),
            max_frame_size=swim.max_frame_size,
            rng=self._in_memory.rng if self._in_memory else None,
            write_file=self._write_layout_file)
        if joining:
            seeds = set(self._extra_seeds)
            via = sorted(((n.node_id, str(n.advertise_addr)) for n in cluster.nodes
                          if n.node_id != self.node_id),
                         key=lambda item: item[1] not in seeds)
            try:
                await service.join(str(self.address), via)
            except LayoutJoinError as exc:
                raise ConfigError(f"cannot enter the cluster's layout: {exc}") from None
        elif persisted is None:
            await service.save()
        return service

    def _hypercorn_config(self, listener: socket.socket) -> HypercornConfig:
        server = self.config.cluster.server
        hconfig = HypercornConfig.from_mapping(
            # Hypercorn listens on the socket bound in `__aenter__` and closes
            # it when it stops serving; detaching hands it the descriptor.
            bind=[f"fd://{listener.detach()}"],
            graceful_timeout=server.graceful_timeout_seconds,
            h11_max_incomplete_size=server.max_header_bytes,
            keep_alive_timeout=server.keep_alive_timeout,
            accesslog=None,
            errorlog=logging.getLogger("rimio.http"),
            include_server_header=False,
        )
        cap_connections(hconfig, server.max_connections)
        return hconfig

    async def _serve(self, app: Any, hconfig: HypercornConfig, *,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        with self._server_scope:
            await serve(app, hconfig, shutdown_trigger=self._shutdown.wait,  # type: ignore[arg-type]
                        task_status=task_status)

    def _build_coordinator(self, layout: LayoutService, membership: MembershipService,
                           peers: PeerClient, local: LocalReplica) -> Coordinator:
        def replica_for(node_id: str) -> Replica:
            if node_id == self.node_id:
                return local
            address = layout.address_of(node_id)
            if address is None:
                raise ReplicaUnavailable(f"no address known for {node_id}")
            return HttpReplica(node_id, address, peers)

        cluster = self.config.cluster
        return Coordinator(self.node_id, plan_for=layout.plan, replica_for=replica_for,
                           liveness=membership, settings=settings_for(cluster.storage),
                           total_slots=cluster.replication.total_slots,
                           wall_clock=self._wall_clock, refresh_layout=layout.refresh)

    async def _run_background(self, membership: MembershipService, layout: LayoutService,
                              coordinator: Coordinator, mover: SlotMover,
                              antientropy: AntiEntropy, scrubber: Scrubber, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        """Membership, the layout exchange, the coordinator's background work
        (read repair), slot movement, anti-entropy, the scrub, slot-cache eviction and GC, under
        one cancel scope that `__aexit__` cancels."""
        with self._background:
            async with trio.open_nursery() as background:
                await background.start(membership.run)
                await background.start(layout.run)
                await background.start(coordinator.run)
                await background.start(mover.run)
                await background.start(antientropy.run)
                await background.start(scrubber.run)
                await background.start(self.store.run_evictor)
                background.start_soon(self._gc_loop)
                task_status.started()

    async def _gc_loop(self) -> None:
        storage = self.config.cluster.storage
        while True:
            await trio.sleep(storage.gc_interval_seconds)
            policy = GcPolicy(grace_seconds=storage.gc_grace_seconds,
                              write_result_ttl_seconds=storage.write_result_ttl_seconds,
                              files_per_second=storage.gc_files_per_second)
            try:
                # trio's clock is monotonic (and virtual under a simulation's MockClock)
                removed = await self.store.gc_sweep(policy, wall=self._wall_clock,
                                                    mono=trio.current_time)
            except Exception:
                log.exception("garbage collection failed")
                continue
            if removed:
                log.info("garbage collection unlinked %d files", removed)
