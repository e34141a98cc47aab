"""`MembershipService`: the trio shell around the SWIM state machine.

It feeds `rimio.core.swim.Member` with received bytes (stamped with their
receipt time), due timers and measured event-loop lag, and carries out the
actions it returns: frames are sealed (when a key ring is configured) and
sent through a `Transport`, timers go into a heap watched by one task.

Inbound packets are handled synchronously in the caller's task (the HTTP
route): decoding and the state machine are pure and quick, so a ping is
answered without waiting behind any data traffic, and outgoing sends are
started as tasks in the service's own nursery.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence

import trio

from rimio.core import frames as fr
from rimio.core.keyring import KeyRing, SealError
from rimio.core.swim import (
    Action,
    Member,
    MemberChanged,
    MemberView,
    Send,
    SetTimer,
    SwimConfig,
    TimerKey,
    UserMessage,
)
from rimio.net.transport import Transport, TransportError

log = logging.getLogger("rimio.membership")

LAG_SAMPLE_INTERVAL = 0.1

MemberListener = Callable[[MemberChanged], None]
UserListener = Callable[[UserMessage], None]
SendListener = Callable[[Send, int], None]


class MembershipService:
    def __init__(
        self,
        config: SwimConfig,
        node_id: str,
        address: str,
        transport: Transport,
        *,
        seeds: Sequence[str] = (),
        keyring: KeyRing | None = None,
        incarnation: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.address = address
        self._transport = transport
        self._seeds = [s for s in seeds if s != address]
        self._keyring = keyring
        self._associated = config.cluster.encode()
        self._member = Member(config, node_id, address, rng or random.Random(),
                              trio.current_time(), incarnation=incarnation)
        self._timers: list[tuple[float, int, TimerKey]] = []
        self._timer_seq = 0
        self._wakeup: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.counters: Counter[str] = Counter()
        self._cap_logged = False
        self.member_listeners: list[MemberListener] = []
        self.user_listeners: list[UserListener] = []
        self.send_listeners: list[SendListener] = []  # (action, bytes on the wire)
        # A stalled event loop, as the simulator plays it (`pause`/`resume`).
        self._paused_since: float | None = None
        self._held: list[tuple[str, bytes]] = []
        self._resumed = trio.Event()

    # -- views -------------------------------------------------------------------

    @property
    def member(self) -> Member:
        return self._member

    def members(self) -> list[MemberView]:
        return self._member.members()

    @property
    def incarnation(self) -> int:
        return self._member.incarnation

    def is_reachable(self, node_id: str) -> bool:
        """Whether requests should be sent to `node_id` (suspects still are).

        This node always is; a node not heard of yet is too: try it, the
        transport will tell.
        """
        if node_id == self.node_id:
            return True
        member = self._member.member(node_id)
        return member is None or member.status.counts_as_alive

    # -- life cycle --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Reports started once the timers are armed."""
        try:
            await self._serve(task_status)
        finally:
            self._nursery = None  # frames that arrive from now on are dropped

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            now = trio.current_time()
            self._execute(self._member.start(now))
            if self._seeds:
                self._execute(self._member.join(now, self._seeds))
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._lag_monitor)
            task_status.started()

    async def leave(self, linger: float | None = None) -> None:
        """Announce a graceful leave and give the news a moment to spread."""
        if self._nursery is None:
            return
        peers = [m for m in self.members()
                 if m.node_id != self.node_id and m.status.counts_as_alive]
        self._execute(self._member.leave(trio.current_time()))
        if not peers:
            return
        wait = linger if linger is not None else 3 * self.config.gossip_interval
        await trio.sleep(wait)

    # -- a stalled loop, simulated -------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def pause(self) -> None:
        """Act as if this node's event loop stalled (SIGSTOP, a long GC): frames
        and due timers wait. For simulations, where one trio loop hosts every
        node and a real stall cannot be had for one of them."""
        if self._paused_since is None:
            self._paused_since = trio.current_time()
            self._resumed = trio.Event()

    def resume(self) -> None:
        """End a `pause` as a real loop would wake: it measures the stall as
        loop lag, then handles the frames that waited (stamped now), then its
        overdue timers."""
        if self._paused_since is None:
            return
        now = trio.current_time()
        lag, self._paused_since = now - self._paused_since, None
        self.report_loop_lag(lag)
        held, self._held = self._held, []
        for from_addr, data in held:
            self.deliver_packet(from_addr, data, now)
        self._resumed.set()

    async def wait_running(self) -> None:
        """Return at once, or when a `pause` ends."""
        if self._paused_since is not None:
            await self._resumed.wait()

    def report_loop_lag(self, lag: float) -> None:
        """The event loop woke `lag` seconds late (Lifeguard's local health)."""
        self.counters["loop_lag_events"] += 1
        self._execute(self._member.report_loop_lag(trio.current_time(), lag))

    # -- inbound -----------------------------------------------------------------

    def _open(self, data: bytes) -> bytes | None:
        if self._keyring is None:
            return data
        try:
            return self._keyring.open(data, self._associated)
        except SealError:
            self.counters["unsealable_frames"] += 1
            return None

    def _seal(self, frame: fr.Frame) -> bytes:
        data = fr.encode(frame, cluster=self.config.cluster)
        if self._keyring is not None:
            data = self._keyring.seal(data, self._associated)
        return data

    def deliver_packet(self, from_addr: str, data: bytes, received_at: float) -> None:
        """A packet arrived; `received_at` is `trio.current_time()` at receipt."""
        if self._nursery is None:
            self.counters["dropped_not_running"] += 1
            return
        if self._paused_since is not None:
            self._held.append((from_addr, data))
            return
        plain = self._open(data)
        if plain is None:
            return
        actions = self._member.handle_data(received_at, from_addr, plain)
        # A push-pull answer is only ever the body of a stream response; one
        # provoked by a request sent as a packet is not sent to the address
        # that request named.
        self._execute([a for a in actions if not (isinstance(a, Send) and isinstance(
            a.frame, fr.PushPullResponse))])

    def answer_stream(self, from_addr: str, data: bytes, received_at: float) -> bytes | None:
        """A push-pull request arrived; return the sealed response, if any."""
        if self._nursery is None:
            self.counters["dropped_not_running"] += 1
            return None
        plain = self._open(data)
        if plain is None:
            return None
        actions = self._member.handle_data(received_at, from_addr, plain)
        reply: bytes | None = None
        rest: list[Action] = []
        for action in actions:
            if (reply is None and isinstance(action, Send)
                    and isinstance(action.frame, fr.PushPullResponse)):
                reply = self._seal(action.frame)
            else:
                rest.append(action)
        self._execute(rest)
        return reply

    # -- actions -----------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        """Carry out actions of this node's member that a caller obtained by
        driving it directly (a simulation injecting a frame)."""
        self._execute(actions)

    def _execute(self, actions: list[Action]) -> None:
        if self._member.members_refused and not self._cap_logged:
            self._cap_logged = True
            log.warning("the member table is full (membership.max_members = %d): updates "
                        "about new members are ignored", self.config.max_members)
        for action in actions:
            if isinstance(action, Send):
                if self._nursery is None:  # not running (any more): nothing goes out
                    self.counters["dropped_not_running"] += 1
                    continue
                self._nursery.start_soon(self._send, action)
            elif isinstance(action, SetTimer):
                self._set_timer(action.at, action.key)
            elif isinstance(action, MemberChanged):
                log.info("member %s at %s is %s (incarnation %d)", action.node_id,
                         action.address, action.status.value, action.incarnation)
                for listener in self.member_listeners:
                    listener(action)
            elif isinstance(action, UserMessage):
                for user_listener in self.user_listeners:
                    user_listener(action)

    async def _send(self, action: Send) -> None:
        data = self._seal(action.frame)
        for listener in self.send_listeners:
            listener(action, len(data))
        try:
            if action.stream:
                reply = await self._transport.request_stream(action.to, data, node=action.node)
                self.counters["streams_sent"] += 1
                if reply:
                    self.deliver_packet(action.to, reply, trio.current_time())
            else:
                await self._transport.send_packet(action.to, data, node=action.node)
                self.counters["packets_sent"] += 1
        except TransportError as exc:
            # Loss is normal in SWIM: the protocol's timeouts handle it.
            self.counters["send_failures"] += 1
            log.debug("send to %s failed: %s", action.to, exc)

    # -- timers ------------------------------------------------------------------

    def _set_timer(self, at: float, key: TimerKey) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (at, self._timer_seq, key))
        if self._wakeup is not None and at < self._wakeup.deadline:
            self._wakeup.deadline = at

    async def _timer_loop(self) -> None:
        while True:
            deadline = self._timers[0][0] if self._timers else float("inf")
            with trio.move_on_at(deadline) as scope:
                self._wakeup = scope
                await trio.sleep_forever()
            self._wakeup = None
            if self._paused_since is not None:
                await self._resumed.wait()
            now = trio.current_time()
            while self._timers and self._timers[0][0] <= now:
                _, _, key = heapq.heappop(self._timers)
                self._execute(self._member.handle_timer(now, key))

    async def _lag_monitor(self) -> None:
        """Measure how late the event loop wakes us; a stalled loop is our own
        fault, and Lifeguard's awareness makes us slower to accuse others."""
        while True:
            before = trio.current_time()
            await trio.sleep(LAG_SAMPLE_INTERVAL)
            lag = trio.current_time() - before - LAG_SAMPLE_INTERVAL
            if lag >= self.config.loop_lag_threshold and self._paused_since is None:
                self.report_loop_lag(lag)
