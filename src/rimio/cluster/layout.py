"""`LayoutService`: this node's copy of the cluster layout, kept, shared and merged.

It holds the node's current `Layout` (RFC 0011 §2), persisted on the node's
first disk (`layout.msgpack`, written atomically) so a restart keeps it, and
spreads it (§6):

* `update(fn)` applies a local transition, persists it and pushes the new
  layout to every reachable member;
* `merge_remote(frame)` is the receiving side of `POST /internal/v1/layout`:
  merge, persist, answer with the merged layout; news learnt that way is
  pushed on to the others (never back to the sender), so a change floods
  the cluster in one round and stops once everyone has it;
* pushes are coalesced per peer: at most one exchange with a peer is under
  way for pushes; changes made meanwhile are sent by one more exchange once
  it ends, which carries the layout as it is then (a burst of changes costs
  two exchanges per peer, not one per change);
* `run()` exchanges with one random reachable member every `interval`
  seconds, so a node that was away catches up.

Readers take `current` (one immutable object: a request sees one layout) or
`plan(slot)`; `wait_changed(seen)` returns once the layout is no longer
`seen` — what the coordinator and the mover wait on.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

import trio

from rimio.config import ClusterConfig
from rimio.core.frames import FrameError
from rimio.core.layout import Layout, LayoutMismatch, Role, merge
from rimio.core.layout_frames import decode_layout, encode_layout
from rimio.core.quorum import SlotPlan

log = logging.getLogger("rimio.layout")

LAYOUT_FILE = "layout.msgpack"
DEFAULT_EXCHANGE_INTERVAL = 5.0


class LayoutExchanger(Protocol):
    """Sends a layout frame to a node and returns the node's merged answer."""

    async def exchange(self, address: str, node_id: str, frame: bytes) -> bytes: ...


class Placement(Protocol):
    """What request routing reads of the layout (`LayoutService` is one)."""

    @property
    def current(self) -> Layout: ...
    def address_of(self, node_id: str) -> str | None: ...


class StaticPlacement:
    """A layout that never changes (an `ObjectService` built without a node)."""

    def __init__(self, layout: Layout) -> None:
        self.current = layout

    def address_of(self, node_id: str) -> str | None:
        return self.current.address(node_id)


class LayoutJoinError(Exception):
    """No member answered a joining node's layout exchange."""


def founding_layout(cluster: ClusterConfig) -> Layout:
    """The layout of the founding nodes of `initial_cluster` (RFC 0011 §2)."""
    replication = cluster.replication
    return Layout.founding({n.node_id: str(n.advertise_addr) for n in cluster.nodes},
                           total_slots=replication.total_slots,
                           replicas=replication.replicas,
                           write_quorum=replication.min_write_replicas)


def empty_layout(cluster: ClusterConfig) -> Layout:
    """What a joining node starts from: the cluster's shape, no members yet."""
    replication = cluster.replication
    return Layout.empty(total_slots=replication.total_slots, replicas=replication.replicas,
                        write_quorum=replication.min_write_replicas)


def write_layout_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _write_in_thread(path: Path, data: bytes) -> None:
    await trio.to_thread.run_sync(write_layout_file, path, data)


class LayoutService:
    def __init__(self, node_id: str, layout: Layout, *, cluster: str, state_file: Path,
                 exchanger: LayoutExchanger | None = None,
                 reachable: Callable[[str], bool] = lambda node_id: True,
                 live_address: Callable[[str], str | None] = lambda node_id: None,
                 interval: float = DEFAULT_EXCHANGE_INTERVAL, max_frame_size: int = 1 << 20,
                 rng: random.Random | None = None,
                 write_file: Callable[[Path, bytes], Awaitable[None]] | None = None) -> None:
        """`write_file` persists the layout (default: atomically, in a worker
        thread; the deterministic simulation runs it inline)."""
        self.node_id = node_id
        self._layout = layout
        self._write_file = write_file or _write_in_thread
        self._cluster = cluster
        self._state_file = state_file
        self._exchanger = exchanger
        self._reachable = reachable
        self._live_address = live_address
        self.interval = interval
        self.max_frame_size = max_frame_size
        self._rng = rng or random.Random()
        self._lock = trio.Lock()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        # push coalescing: peers with a push under way, and those of them
        # that must be pushed to again once it ends (the layout changed meanwhile)
        self._pushing: set[str] = set()
        self._push_again: set[str] = set()
        # the frame of one layout (the current one, mostly): encoded once for
        # the file, every push and every answer
        self._framed: tuple[Layout, bytes] | None = None

    # -- loading ----------------------------------------------------------------------

    @staticmethod
    def load(state_file: Path, *, cluster: str, max_frame_size: int = 1 << 20
             ) -> Layout | None:
        """The layout persisted in `state_file`, or None when there is none.
        (Blocking: call it from a worker thread.)"""
        try:
            data = state_file.read_bytes()
        except FileNotFoundError:
            return None
        return decode_layout(data, max_size=max_frame_size, cluster=cluster)

    # -- reading ------------------------------------------------------------------------

    @property
    def current(self) -> Layout:
        return self._layout

    def plan(self, slot: int) -> SlotPlan:
        """The slot's plan under the current layout (what the coordinator calls)."""
        return self._layout.plan(slot)

    def address_of(self, node_id: str) -> str | None:
        """Where to reach `node_id`: the membership's address (fresher), else the layout's."""
        return self._live_address(node_id) or self._layout.address(node_id)

    def check_version(self, version: int) -> int | None:
        """What a replica route asks of a request's layout version (RFC 0011 §5):
        None to go ahead, or this node's version when the request's is older."""
        mine = self._layout.version
        return mine if version < mine else None

    async def wait_changed(self, seen: Layout) -> Layout:
        """Return the current layout once it is not `seen` any more."""
        while self._layout is seen:
            await self._changed.wait()
        return self._layout

    def frame(self) -> bytes:
        return self._frame_of(self._layout)

    def _frame_of(self, layout: Layout) -> bytes:
        framed = self._framed
        if framed is None or framed[0] is not layout:
            framed = self._framed = (layout, encode_layout(layout, cluster=self._cluster))
        return framed[1]

    # -- changing ---------------------------------------------------------------------

    async def _adopt(self, layout: Layout, *, push: bool, skip: str | None = None) -> bool:
        """Make `layout` current (caller holds the lock); persist first."""
        if layout is self._layout or layout == self._layout:
            return False
        data = self._frame_of(layout)
        await self._write_file(self._state_file, data)
        before = self._layout
        self._layout = layout
        if before.role(self.node_id) is not layout.role(self.node_id):
            log.info("this node is now %s in the layout",
                     (layout.role(self.node_id) or Role.REMOVED).value)
        event, self._changed = self._changed, trio.Event()
        event.set()
        if push:
            self._push(skip)
        return True

    async def save(self) -> None:
        """Persist the current layout (a founder's first start)."""
        data = self.frame()
        await self._write_file(self._state_file, data)

    async def update(self, change: Callable[[Layout], Layout]) -> Layout:
        """Apply a local transition (LayoutError if not allowed), persist, push."""
        async with self._lock:
            await self._adopt(change(self._layout), push=True)
            return self._layout

    async def merge_layout(self, other: Layout, *, source: str | None = None) -> Layout:
        """Merge `other` into ours (LayoutMismatch for another cluster's)."""
        async with self._lock:
            await self._adopt(merge(self._layout, other), push=True, skip=source)
            return self._layout

    async def merge_remote(self, data: bytes, *, source: str | None = None) -> bytes:
        """Answer of `POST /internal/v1/layout`: merge the sender's layout and
        return ours. Raises FrameError (bad frame) or LayoutMismatch; neither
        changes anything."""
        theirs = decode_layout(data, max_size=self.max_frame_size, cluster=self._cluster)
        merged = await self.merge_layout(theirs, source=source)
        return self._frame_of(merged)

    # -- exchanging -------------------------------------------------------------------

    def _peers(self) -> list[str]:
        return sorted(n for n in self._layout.members
                      if n != self.node_id and self._reachable(n))

    def _push(self, skip: str | None) -> None:
        for node in self._peers():
            if node != skip:
                self._push_to(node)

    def _push_to(self, node_id: str) -> None:
        if self._nursery is None:
            return
        if node_id in self._pushing:
            self._push_again.add(node_id)
            return
        try:
            self._nursery.start_soon(self._push_loop, node_id)
        except RuntimeError:  # the service is stopping; the layout is persisted
            return
        self._pushing.add(node_id)

    async def _push_loop(self, node_id: str) -> None:
        """Exchange with `node_id` until no change waits for it (each exchange
        sends the layout as it is when it starts)."""
        try:
            while True:
                self._push_again.discard(node_id)
                await self.exchange_with(node_id)
                if node_id not in self._push_again:
                    return
        finally:
            self._pushing.discard(node_id)
            self._push_again.discard(node_id)

    async def exchange_with(self, node_id: str) -> bool:
        """Send ours to `node_id` and merge its answer; False if it did not answer."""
        address = self.address_of(node_id)
        if address is None or self._exchanger is None:
            return False
        try:
            answer = await self._exchanger.exchange(address, node_id, self.frame())
            theirs = decode_layout(answer, max_size=self.max_frame_size, cluster=self._cluster)
            # Their answer already holds ours: nothing new to push back to them.
            await self.merge_layout(theirs, source=node_id)
        except (FrameError, LayoutMismatch) as exc:
            log.warning("layout exchange with %s: %s", node_id, exc)
            return False
        except Exception as exc:  # unreachable peers are routine
            log.debug("layout exchange with %s failed: %s", node_id, exc)
            return False
        return True

    async def refresh(self, within: float = 2.0) -> None:
        """Exchange with every reachable member at once (what a coordinator
        does when a replica says its layout is newer), for at most `within` s."""
        with trio.move_on_after(within):
            async with trio.open_nursery() as nursery:
                for node in self._peers():
                    nursery.start_soon(self._exchange_quietly, node)

    async def _exchange_quietly(self, node_id: str) -> None:
        await self.exchange_with(node_id)

    async def join(self, address: str, via: Sequence[tuple[str, str]]) -> Layout:
        """Enter the layout as `joining` through the first of `via` (node id,
        address) that answers. Nothing is persisted before one did (a node that
        never reached the cluster must not remember a layout of itself alone).
        Raises LayoutJoinError if none answers."""
        mine = self._layout
        if self.node_id not in mine.members:
            mine = mine.join(self.node_id, address)
        frame = encode_layout(mine, cluster=self._cluster)
        if self._exchanger is None:
            raise LayoutJoinError("this node has no way to reach other nodes")
        problems = []
        for node_id, addr in via:
            if node_id == self.node_id:
                continue
            try:
                answer = await self._exchanger.exchange(addr, node_id, frame)
                theirs = decode_layout(answer, max_size=self.max_frame_size,
                                       cluster=self._cluster)
                merged = await self.merge_layout(merge(mine, theirs), source=node_id)
            except Exception as exc:  # every failure is a reason to try the next one
                problems.append(f"{node_id} at {addr}: {exc}")
                continue
            log.info("joined the layout through %s (version %d)", node_id, merged.version)
            return merged
        raise LayoutJoinError("no member took our layout: " + "; ".join(problems or ["none"]))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Push once, then exchange with one random reachable member every
        `interval` seconds, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._push(None)
                task_status.started()
                while True:
                    await trio.sleep(self.interval * (0.5 + self._rng.random()))
                    peers = self._peers()
                    if peers:
                        await self.exchange_with(self._rng.choice(peers))
        finally:
            self._nursery = None  # stopping: a merge answered now is not pushed on
