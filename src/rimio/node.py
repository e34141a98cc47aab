"""`Node`: one Rimio node, composed under one trio nursery.

`async with Node(config) as node:` checks the configuration's disks and port,
opens the store (cleaning up interrupted writes), starts the HTTP server on
the node's one port and the background tasks; leaving the block stops
accepting, lets in-flight requests finish (up to the graceful timeout) and
closes the store. Tests, `rimio start` and embedding programs all use it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from rimio.api.app import NodeView, create_app
from rimio.api.inflight import InFlight
from rimio.cluster.membership import MembershipService
from rimio.cluster.peers import PeerClient
from rimio.config import Address, NodeConfig
from rimio.errors import ConfigError
from rimio.net.http import HttpTransport
from rimio.net.transport import Transport
from rimio.ops.objects import ObjectService
from rimio.storage.parts import ensure_dir
from rimio.storage.store import LocalStore, check_disk_usable

log = logging.getLogger("rimio.node")


def check_port_free(addr: Address) -> None:
    """Raise ConfigError if the node's port cannot be bound (before anything is written)."""
    if addr.port == 0:
        return
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr.host, addr.port))
        except OSError as exc:
            reason = ("address already in use" if exc.errno == errno.EADDRINUSE
                      else exc.strerror or str(exc))
            raise ConfigError(f"cannot listen on {addr}: {reason}") from None


NODE_FILE = "node.json"
LOCK_FILE = ".lock"


def lock_disk(disk: Path) -> int:
    """Take the disk's exclusive lock (held until the fd closes); one node per disk.

    Two processes on one disk would each clean up the other's in-flight
    writes at start-up; the lock makes the second one refuse to start.
    """
    ensure_dir(disk)
    fd = os.open(disk / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"disk {disk} is in use by another rimio process") from None
    return fd


def claim_disk(disk: Path, node_id: str) -> int:
    """Check that `disk` belongs to this node and return its next incarnation.

    The incarnation rises on every start, so a restarted node's `alive` beats
    whatever the cluster remembers about its previous life.
    """
    path = disk / NODE_FILE
    incarnation = 0
    if path.exists():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            owner, incarnation = str(state["node_id"]), int(state["incarnation"]) + 1
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} is unreadable; remove it only if the disk is this "
                              "node's") from None
        if owner != node_id:
            raise ConfigError(f"disk {disk} belongs to node {owner!r}, not {node_id!r}")
    tmp = disk / f".{NODE_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"node_id": node_id, "incarnation": incarnation}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return incarnation


class Node:
    """One Rimio node.

    `seeds` are extra gossip addresses to join through (used by `rimio join`);
    founding nodes seed from the other nodes of `initial_cluster`.
    `transport` replaces the HTTP gossip transport (the test harness uses it).
    """

    def __init__(self, config: NodeConfig, *, seeds: Sequence[str] = (),
                 transport: Transport | None = None) -> None:
        self.config = config
        self._extra_seeds = list(seeds)
        self._transport = transport
        self.keyring = config.cluster.keyring()
        self.membership: MembershipService | None = None
        storage = config.cluster.storage
        self.store = LocalStore(
            config.spec.disks,
            total_slots=config.cluster.replication.total_slots,
            part_size=storage.part_size_bytes,
            io_threads=storage.io_threads,
            max_open_slots=storage.max_open_slots,
        )
        self.objects = ObjectService(config, self.store)
        self.address: Address = config.spec.advertise_addr
        self._stack: contextlib.AsyncExitStack | None = None
        self._shutdown = trio.Event()
        self._background = trio.CancelScope()
        self._server_scope = trio.CancelScope()
        self._inflight: InFlight | None = None

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def url(self) -> str:
        host = f"[{self.address.host}]" if ":" in self.address.host else self.address.host
        return f"http://{host}:{self.address.port}"

    async def __aenter__(self) -> Node:
        for disk in self.config.spec.disks:
            check_disk_usable(disk)
        check_port_free(self.config.spec.bind_addr)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            for disk in self.config.spec.disks:
                fd = await trio.to_thread.run_sync(lock_disk, disk)
                stack.callback(os.close, fd)
            await self.store.open()
            stack.push_async_callback(self.store.close)
            incarnation = await trio.to_thread.run_sync(
                claim_disk, self.config.spec.disks[0], self.node_id)
            transport = self._transport
            if transport is None:
                swim = self.config.cluster.swim_config()
                transport = HttpTransport(str(self.address), keyring=self.keyring,
                                          packet_timeout=swim.probe_timeout)
                stack.push_async_callback(transport.aclose)  # after the nursery is gone
            peers = PeerClient(self.keyring)
            stack.push_async_callback(peers.aclose)
            self.objects.peers = peers
            nursery = await stack.enter_async_context(trio.open_nursery())
            view = await self._start_server(nursery)
            membership = await self._start_membership(nursery, view, incarnation, transport)
            await nursery.start(self._run_background, membership)
        except BaseException as exc:
            self._shutdown.set()
            self._background.cancel()
            self._server_scope.cancel()
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack = stack
        log.info("node %s serving on %s", self.node_id, self.url)
        return self

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
        if self._inflight is not None and exc_type is None:
            # In-flight requests get the graceful timeout; idle keep-alive
            # connections get nothing (hypercorn would wait for them too).
            with trio.move_on_after(self.config.cluster.server.graceful_timeout_seconds):
                await self._inflight.wait_idle()
        self._server_scope.cancel()
        self._background.cancel()
        assert self._stack is not None
        return await self._stack.__aexit__(exc_type, exc, tb)

    def stop(self) -> None:
        """Begin a graceful stop; the `async with` block still has to be left."""
        self._shutdown.set()

    async def wait_stopped(self) -> None:
        await self._shutdown.wait()

    async def _start_server(self, nursery: trio.Nursery) -> NodeView:
        spec = self.config.spec
        server = self.config.cluster.server
        hconfig = HypercornConfig()
        hconfig.bind = [str(spec.bind_addr)]
        hconfig.graceful_timeout = server.graceful_timeout_seconds
        hconfig.h11_max_incomplete_size = server.max_header_bytes
        hconfig.accesslog = None
        hconfig.errorlog = logging.getLogger("rimio.http")
        hconfig.include_server_header = False
        view = NodeView(
            node_id=self.node_id,
            cluster=self.config.cluster,
            address=str(spec.advertise_addr),
            objects=self.objects,
            keyring=self.keyring,
            max_frame_size=self.config.cluster.swim_config().max_frame_size,
        )
        self._inflight = InFlight(create_app(view))
        binds: Any = await nursery.start(self._serve, self._inflight, hconfig)
        if spec.bind_addr.port == 0 and binds:
            port = int(str(binds[0]).rsplit(":", 1)[1])
            host = spec.advertise_addr.host
            self.address = Address(host, port)
            view.address = str(self.address)
        return view

    async def _serve(self, app: InFlight, hconfig: HypercornConfig, *,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        with self._server_scope:
            await serve(app, hconfig, shutdown_trigger=self._shutdown.wait,  # type: ignore[arg-type]
                        task_status=task_status)

    async def _start_membership(self, nursery: trio.Nursery, view: NodeView,
                                incarnation: int, transport: Transport) -> MembershipService:
        swim = self.config.cluster.swim_config()
        address = str(self.address)
        if hasattr(transport, "self_address"):
            # the port is known only now (port 0 binds); the transport names us by it
            transport.self_address = address
        seeds = [str(n.advertise_addr) for n in self.config.cluster.nodes
                 if n.node_id != self.node_id and n.advertise_addr.port != 0]
        seeds += [s for s in self._extra_seeds if s not in seeds]
        membership = MembershipService(swim, self.node_id, address, transport, seeds=seeds,
                                       keyring=self.keyring, incarnation=incarnation)
        self.membership = membership
        view.membership = membership
        self.objects.is_alive = self._is_alive
        return membership

    def _is_alive(self, node_id: str) -> bool:
        """Whether requests should be sent to `node_id` (suspects still are)."""
        if self.membership is None or node_id == self.node_id:
            return True
        member = self.membership.member.member(node_id)
        # Unknown (not heard of yet) counts as alive: try it, the transport will tell.
        return member is None or member.status.value in ("alive", "suspect")

    async def _run_background(self, membership: MembershipService, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        """Membership, slot-cache eviction and GC, under one cancel scope that
        `__aexit__` cancels."""
        with self._background:
            async with trio.open_nursery() as background:
                await background.start(membership.run)
                await background.start(self.store.run_evictor)
                background.start_soon(self._gc_loop)
                task_status.started()

    async def _gc_loop(self) -> None:
        storage = self.config.cluster.storage
        while True:
            await trio.sleep(storage.gc_interval_seconds)
            try:
                removed = await self.store.collect_garbage(time.time() - storage.gc_grace_seconds)
            except Exception:
                log.exception("garbage collection failed")
                continue
            if removed:
                log.info("collected %d superseded generations", removed)
