"""The SWIM + Lifeguard membership state machine (sans-IO).

`Member` is one node's protocol state. It never reads a clock, sleeps, touches
a socket or uses the `random` module's global state: the caller passes the
current time into every call and gets back a list of actions (`Send`,
`SetTimer`, `MemberChanged`, `UserMessage`) to carry out in order. Randomness
comes from the `random.Random` given at construction, so a seed replays.

Protocol outline (memberlist semantics unless noted):

* probe: every ``probe_interval * (awareness + 1)`` ping the next member of a
  shuffled round-robin order; no ack within ``probe_timeout * (awareness + 1)``
  -> ask `indirect_checks` members to ping it (ping-req, with nack); no ack by
  the end of the period -> suspect it.
* suspicion: a suspect becomes dead after the Lifeguard dynamic timeout
  (`suspicion.py`); any member hearing it is suspected refutes with a higher
  incarnation. With the buddy system a ping to a suspect carries the
  suspicion, so the suspect learns it at once.
* dissemination: accepted updates ride piggybacked on pings/acks and on
  gossip frames to `gossip_nodes` random members every `gossip_interval`.
* push-pull: every `push_pull_interval` (scaled above 32 members) a full
  state exchange with one random live member; remote "dead" is merged as
  "suspect" so the accused gets a chance to refute. Push-pull is a pair of
  frames: the shell sends `PushPullRequest` (``Send.stream`` is True) and
  the receiver answers with a `PushPullResponse` to the requester's address.
  Over a request/response transport the shell may instead return that Send's
  frame as the response body and feed the response to `handle_frame`.
* a ping from a member we do not know means gossip about it missed us: we
  push-pull at once with a live member we do know (Rimio addition,
  rate-limited), never with the unknown address; the ping is not answered
  until the pinger is in our table.
* bounds on what gossip may do (Rimio addition): an update above
  `MAX_INCARNATION` (an accusation: at or above it) is dropped and counted, so
  a refutation never overflows the wire type; updates about new names are
  ignored once the table holds `max_members`; and every packet or push-pull
  goes to an address a member advertised in the table, or to a seed, never to
  an address that only a frame's `source_address`/`target_address` (or the
  transport's source) names. The one exception is the answer to a push-pull
  request, which is a reply on the request's own stream.
* re-merge (Rimio addition): every `reconnect_interval`, push-pull with the
  last address of one member dead for less than `reconnect_period`, so two
  halves of a healed partition become one cluster without an operator.
* a restarted node that finds its id alive at *another* address does not
  refute that claim (it could be a live impostor); it waits until the old
  entry is dead or left, then announces itself with a higher incarnation from
  its new address. Same address: it refutes at once.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rimio.core import frames as fr
from rimio.core.frames import Status
from rimio.core.swim.actions import (
    Action,
    MemberChanged,
    Send,
    SetTimer,
    TimerKey,
    UserMessage,
)
from rimio.core.swim.awareness import Awareness
from rimio.core.swim.config import SwimConfig
from rimio.core.swim.dissemination import BroadcastQueue, retransmit_limit
from rimio.core.swim.probing import ProbeOrder
from rimio.core.swim.stats import Counters, SwimStats, snapshot
from rimio.core.swim.suspicion import Suspicion, expected_confirmations, suspicion_bounds
from rimio.core.swim.table import MemberRecord, MemberTable

PROBE: TimerKey = ("probe", "")
GOSSIP: TimerKey = ("gossip", "")
PUSH_PULL: TimerKey = ("push-pull", "")
RECONNECT: TimerKey = ("reconnect", "")

# Room for the msgpack array header of the update list (at most 5 bytes).
_LIST_HEADER = 5

_EARLY_SLACK = 1e-3

_T = TypeVar("_T")
# Frames that can carry piggybacked updates.
_F = TypeVar("_F", fr.Ping, fr.PingReq, fr.Ack, fr.Gossip)


@dataclass(frozen=True, slots=True)
class MemberView:
    """One row of `Member.members()`."""

    node_id: str
    address: str
    status: Status
    incarnation: int


@dataclass(slots=True)
class _Probe:
    """The probe in flight (at most one per period, as in SWIM)."""

    seq: int
    target: str
    address: str
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(frozen=True, slots=True)
class _Relay:
    """An indirect probe we run for `origin`."""

    origin_seq: int
    origin: str
    origin_address: str
    want_nack: bool


class Member:
    """One node's SWIM state. See the module docstring for the protocol.

    Driving it from a trio shell (sketch)::

        m = Member(SwimConfig(cluster=name), node_id, advertise_addr,
                   random.Random(), trio.current_time())
        apply(m.start(now)); apply(m.join(now, seed_addresses))
        # apply(actions): Send -> encode(frame, cluster=name) and post it
        #   (stream=True: the gossip stream endpoint); SetTimer -> push
        #   (at, key) on a heap; MemberChanged -> update the registry.
        # timer task: sleep until the earliest `at`, then
        #   apply(m.handle_timer(trio.current_time(), key)) for each due key.
        # packet endpoint: stamp = trio.current_time() on receipt, before
        #   anything can wait; apply(m.handle_data(stamp, peer, body)).
        # loop-lag task: sleep 0.1 s, measure the overshoot,
        #   apply(m.report_loop_lag(now, overshoot)).
        # SIGTERM: apply(m.leave(now)); keep running ~1 s; exit.

    All methods are synchronous and fast; none blocks. `now` must come from
    one monotonic clock (``trio.current_time()``).
    """

    def __init__(self, config: SwimConfig, node_id: str, address: str,
                 rng: random.Random | int, now: float, *, incarnation: int = 0) -> None:
        self.config = config
        self.node_id = node_id
        self.address = address
        self._rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        self._incarnation = min(incarnation, fr.MAX_INCARNATION)
        self._table = MemberTable()
        self._table.force(MemberRecord(node_id, address, Status.ALIVE, self._incarnation, now))
        self._queue = BroadcastQueue(config.max_broadcast_queue)
        self._awareness = Awareness(config.awareness_max_multiplier, enabled=config.awareness)
        self._order = ProbeOrder(self._rng)
        self._suspicions: dict[str, Suspicion] = {}
        self._timers: dict[TimerKey, float] = {}
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._seeds: tuple[str, ...] = ()
        self._left = False
        self._counters = Counters()
        self._pulled_unknown: dict[str, float] = {}
        self._last_unknown_pull = -math.inf

    # ------------------------------------------------------------------
    # Read-only views

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def awareness(self) -> int:
        """Current local health score (0 = healthy)."""
        return self._awareness.score

    @property
    def has_left(self) -> bool:
        return self._left

    def members(self) -> list[MemberView]:
        """Every known member including this one, sorted by node id."""
        return [MemberView(r.node, r.address, r.status, r.incarnation)
                for r in sorted(self._table, key=lambda r: r.node)]

    def member(self, node_id: str) -> MemberView | None:
        r = self._table.get(node_id)
        return None if r is None else MemberView(r.node, r.address, r.status, r.incarnation)

    def stats(self) -> SwimStats:
        return snapshot(self._counters, queue_drops=self._queue.drops,
                        queue_length=len(self._queue), awareness=self._awareness.score,
                        incarnation=self._incarnation)

    @property
    def members_refused(self) -> int:
        """Updates about new names ignored because the table was full (cheap
        to poll, so a shell can log the first one)."""
        return self._counters.members_refused

    def pending_updates(self) -> list[fr.Update]:
        """Updates still waiting to be piggybacked (for tests and metrics)."""
        return self._queue.pending()

    # ------------------------------------------------------------------
    # Inputs

    def start(self, now: float) -> list[Action]:
        """Arm the periodic timers. Call once, before or after `join`."""
        out: list[Action] = []
        # Random phases: nodes started together must not probe in lockstep.
        cfg = self.config
        self._set_timer(out, PROBE, now + self._rng.uniform(0, cfg.probe_interval))
        self._set_timer(out, GOSSIP, now + self._rng.uniform(0, cfg.gossip_interval))
        self._set_timer(out, PUSH_PULL, now + self._rng.uniform(0, cfg.push_pull_interval))
        self._set_timer(out, RECONNECT, now + self._rng.uniform(0, cfg.reconnect_interval))
        return out

    def join(self, now: float, seeds: Sequence[str]) -> list[Action]:
        """Push-pull with every seed address. Until a live peer is known, one
        seed is retried every `join_retry_interval` (seeds of a cluster that
        starts together may not be listening yet)."""
        self._seeds = tuple(s for s in seeds if s != self.address)
        out: list[Action] = []
        for seed in self._seeds:
            self._send_push_pull(out, seed, None, join=True)
        if self._seeds:
            self._set_timer(out, PUSH_PULL, now + self.config.join_retry_interval)
        return out

    def leave(self, now: float) -> list[Action]:
        """Announce a graceful leave. Keep delivering frames and timers for a
        few gossip intervals afterwards so the news spreads; probing stops."""
        out: list[Action] = []
        if self._left:
            return out
        self._left = True
        update = fr.Leave(self.node_id, self.address, self._incarnation)
        self._table.force(MemberRecord(self.node_id, self.address, Status.LEFT,
                                       self._incarnation, now))
        self._queue.push(update)
        out.append(MemberChanged(self.node_id, self.address, Status.LEFT, self._incarnation))
        for r in self._sample(self._live_peers(), self.config.leave_fanout):
            self._send(out, r.address, fr.Gossip(self.node_id, (update,)), node=r.node)
        return out

    def report_loop_lag(self, now: float, seconds: float) -> list[Action]:
        """The shell measured that its event loop ran `seconds` late. A lagging
        node cannot trust its own timeouts, so its health score rises."""
        if seconds >= self.config.loop_lag_threshold:
            self._counters.loop_lag_events += 1
            self._awareness.apply(1 + int(seconds / self.config.probe_interval))
        return []

    def handle_data(self, now: float, from_addr: str, data: bytes) -> list[Action]:
        """Decode untrusted bytes and handle the frame; bad frames are counted
        (by `FrameErrorReason`) and dropped."""
        try:
            frame = fr.decode(data, max_size=self.config.max_frame_size,
                              cluster=self.config.cluster)
        except fr.FrameError as exc:
            self._counters.decode_errors[exc.reason.value] += 1
            return []
        return self.handle_frame(now, from_addr, frame)

    def handle_frame(self, now: float, from_addr: str, frame: fr.Frame) -> list[Action]:
        """Handle one decoded frame. `now` should be its receipt time.

        `from_addr` is informational: replies go to the address named inside
        the frame, because a transport's source address (an ephemeral port)
        is not where the peer listens."""
        self._counters.frames_received[frame.TYPE] += 1
        out: list[Action] = []
        match frame:
            case fr.Alive() | fr.Suspect() | fr.Dead() | fr.Leave():
                self._apply_all(now, (frame,), out)
            case fr.Ping():
                self._on_ping(now, frame, out)
            case fr.PingReq():
                self._on_ping_req(now, frame, out)
            case fr.Ack():
                self._on_ack(now, frame, out)
            case fr.Nack():
                if self._probe is not None and self._probe.seq == frame.seq:
                    self._probe.nacks += 1
                    self._counters.nacks_received += 1
            case fr.Gossip():
                self._apply_all(now, frame.updates, out)
            case fr.PushPullRequest():
                self._merge_states(now, frame.source, frame.states, out)
                reply = fr.PushPullResponse(frame.seq, self.node_id, self._states())
                # A reply on the request's own stream (the HTTP response
                # body), not a request to the named address; shells never
                # dial it (see MembershipService.deliver_packet).
                self._send(out, frame.source_address, reply, node=frame.source, stream=True)
            case fr.PushPullResponse():
                self._merge_states(now, frame.source, frame.states, out)
            case fr.User():
                out.append(UserMessage(frame.source, frame.kind, frame.payload))
        return out

    def handle_timer(self, now: float, key: TimerKey) -> list[Action]:
        """A timer set by `SetTimer` is due. Stale or early keys are ignored."""
        at = self._timers.get(key)
        out: list[Action] = []
        # A shell's sleep may wake a hair early (float clocks): allow 1 ms.
        if at is None or at > now + _EARLY_SLACK:
            return out
        del self._timers[key]
        late = now - at
        if self.config.detect_late_timers and late >= self.config.loop_lag_threshold:
            # The timer could not run on time: our loop stalled. Count it
            # against ourselves before judging anyone else.
            self._counters.late_timers += 1
            self.report_loop_lag(now, late)
        kind, ident = key
        if kind == "probe":
            self._on_probe_tick(now, out)
        elif kind == "ack":
            self._on_ack_timeout(now, int(ident), out)
        elif kind == "probe-end":
            self._on_probe_end(now, int(ident), out)
        elif kind == "relay":
            self._on_relay_timeout(int(ident))
        elif kind == "nack":
            self._on_nack_timeout(int(ident), out)
        elif kind == "suspicion":
            self._on_suspicion_timeout(now, ident, out)
        elif kind == "gossip":
            self._on_gossip_tick(now, out)
        elif kind == "push-pull":
            self._on_push_pull_tick(now, out)
        elif kind == "reconnect":
            self._on_reconnect_tick(now, out)
        return out

    # ------------------------------------------------------------------
    # Probing

    def _on_probe_tick(self, now: float, out: list[Action]) -> None:
        interval = self._awareness.scale(self.config.probe_interval)
        self._set_timer(out, PROBE, now + interval)
        if self._probe is not None:
            # The previous period's end and this tick fell together; settle it.
            self._on_probe_end(now, self._probe.seq, out)
        if self._left:
            return
        target = self._order.next(
            lambda: (r.node for r in self._table if r.node != self.node_id),
            self._probe_eligible,
        )
        if target is None:
            return
        rec = self._table.get(target)
        assert rec is not None  # eligible implies present
        seq = self._next_seq()
        prefix: list[fr.Update] = []
        if self.config.buddy_system and rec.status is Status.SUSPECT:
            # Buddy system: tell the suspect directly so it can refute now.
            prefix.append(fr.Suspect(rec.node, rec.address, rec.incarnation, self.node_id))
        ping = fr.Ping(seq, rec.node, self.node_id, self.address)
        self._send(out, rec.address, self._with_updates(ping, prefix), node=rec.node)
        self._probe = _Probe(seq, rec.node, rec.address)
        self._counters.probes += 1
        timeout = self._awareness.scale(self.config.probe_timeout)
        self._set_timer(out, ("ack", str(seq)), now + timeout)
        self._set_timer(out, ("probe-end", str(seq)), now + interval)

    def _probe_eligible(self, node: str) -> bool:
        rec = self._table.get(node)
        return rec is not None and rec.live and node != self.node_id

    def _on_ack_timeout(self, now: float, seq: int, out: list[Action]) -> None:
        p = self._probe
        if p is None or p.seq != seq:
            return
        helpers = [r for r in self._table
                   if r.status is Status.ALIVE and r.node not in (self.node_id, p.target)]
        chosen = self._sample(helpers, self.config.indirect_checks)
        for h in chosen:
            req = fr.PingReq(seq, p.target, p.address, self.node_id, self.address, True)
            self._send(out, h.address, self._with_updates(req), node=h.node)
        p.nacks_expected = len(chosen)
        self._counters.indirect_probes += len(chosen)

    def _on_ack(self, now: float, ack: fr.Ack, out: list[Action]) -> None:
        self._apply_all(now, ack.updates, out)
        p = self._probe
        if p is not None and p.seq == ack.seq and ack.source == p.target:
            self._probe = None
            self._awareness.apply(-1)
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            fwd = fr.Ack(relay.origin_seq, ack.source)
            self._send(out, relay.origin_address, self._with_updates(fwd), node=relay.origin)

    def _on_probe_end(self, now: float, seq: int, out: list[Action]) -> None:
        p = self._probe
        if p is None or p.seq != seq:
            return
        self._probe = None
        self._counters.probe_failures += 1
        # Lifeguard: missing nacks mean *we* may be the one cut off; with no
        # helpers to ask, a missed ack is the only evidence we have.
        if p.nacks_expected > 0:
            missing = max(0, p.nacks_expected - p.nacks)
            self._counters.missing_nacks += missing
            self._awareness.apply(missing)
        else:
            self._awareness.apply(1)
        rec = self._table.get(p.target)
        if rec is None or not rec.live:
            return
        self._counters.suspicions_started += 1
        self._apply(now, fr.Suspect(rec.node, rec.address, rec.incarnation, self.node_id), out)

    def _pull_unknown(self, now: float, source: str, out: list[Action]) -> None:
        """A member we have never heard of is probing us: the gossip about it
        missed us. Pull state now from a live member we know (it most likely
        knows the newcomer) rather than wait for a push-pull round (not in
        memberlist). The newcomer's own address is not used: it is only a
        claim in the frame. Rate-limited per source and overall."""
        if source == self.node_id or self._table.get(source) is not None or self._left:
            return
        last = self._pulled_unknown.get(source)
        if last is not None and now - last < self.config.push_pull_interval:
            return
        if now - self._last_unknown_pull < self.config.probe_interval:
            return
        if len(self._pulled_unknown) >= 64:
            self._pulled_unknown.clear()
        self._pulled_unknown[source] = now
        self._last_unknown_pull = now
        for r in self._sample(self._alive_peers(), 1):
            self._send_push_pull(out, r.address, r.node, join=False)

    def _advertised(self, node: str, address: str) -> bool:
        """Whether `node` is in the table at `address`: the only addresses a
        frame may make us send to (a frame's own address fields are claims)."""
        rec = self._table.get(node)
        ok = rec is not None and rec.address == address and node != self.node_id
        if not ok:
            self._counters.unadvertised_addresses += 1
        return ok

    def _on_ping(self, now: float, ping: fr.Ping, out: list[Action]) -> None:
        self._apply_all(now, ping.updates, out)
        self._pull_unknown(now, ping.source, out)
        if ping.target != self.node_id:
            # Someone else's ping reached our address (e.g. we took over the
            # port of a dead node): answering would vouch for the wrong node.
            self._counters.misdirected_pings += 1
            return
        if not self._advertised(ping.source, ping.source_address):
            return  # answered once the pinger is known at that address
        self._send(out, ping.source_address, self._with_updates(fr.Ack(ping.seq, self.node_id)),
                   node=ping.source)

    def _on_ping_req(self, now: float, req: fr.PingReq, out: list[Action]) -> None:
        self._apply_all(now, req.updates, out)
        self._pull_unknown(now, req.source, out)
        # Probe only a member we know at that address, for a requester we
        # know at its address: otherwise a ping-req could aim us at any host.
        if not (self._advertised(req.target, req.target_address)
                and self._advertised(req.source, req.source_address)):
            return
        if len(self._relays) >= self.config.max_relays:
            self._counters.relays_refused += 1
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(req.seq, req.source, req.source_address, req.want_nack)
        ping = fr.Ping(seq, req.target, self.node_id, self.address)
        self._send(out, req.target_address, self._with_updates(ping), node=req.target)
        self._set_timer(out, ("relay", str(seq)), now + self.config.probe_timeout)
        if req.want_nack:
            self._set_timer(out, ("nack", str(seq)), now + self._nack_timeout())

    def _nack_timeout(self) -> float:
        """When a relay that heard nothing yet tells the requester so.

        The requester sent its ping-req `probe_timeout` into its period and
        counts nacks only until the period ends, `probe_interval -
        probe_timeout` later; a nack sent after a full `probe_timeout` (as
        memberlist does) arrives just too late, and every failed probe then
        counts against the requester's own health. Answer well within it."""
        cfg = self.config
        return min(cfg.probe_timeout, 0.8 * (cfg.probe_interval - cfg.probe_timeout))

    def _on_nack_timeout(self, seq: int, out: list[Action]) -> None:
        relay = self._relays.get(seq)  # still there: the target has not acked yet
        if relay is not None and relay.want_nack:
            self._send(out, relay.origin_address, fr.Nack(relay.origin_seq, self.node_id),
                       node=relay.origin)

    def _on_relay_timeout(self, seq: int) -> None:
        self._relays.pop(seq, None)

    # ------------------------------------------------------------------
    # Updates and the table

    def _apply_all(self, now: float, updates: Iterable[fr.Update], out: list[Action]) -> None:
        """Apply updates received from the network (never our own verdicts)."""
        for u in updates:
            if self._in_bounds(u):
                self._apply(now, u, out)

    def _in_bounds(self, update: fr.Update) -> bool:
        """Whether a received update's incarnation is admissible.

        Every incarnation stays at or below MAX_INCARNATION, far inside the
        wire type, and an accusation strictly below it: the accused can then
        always refute with one more and every peer accepts the refutation.
        Our own suspicions are not checked (they come from our probes)."""
        accusation = isinstance(update, fr.Suspect | fr.Dead)
        limit = fr.MAX_INCARNATION - 1 if accusation else fr.MAX_INCARNATION
        if update.incarnation > limit:
            self._counters.incarnations_refused += 1
            return False
        return True

    def _apply(self, now: float, update: fr.Update, out: list[Action]) -> None:
        if update.node == self.node_id:
            self._about_self(now, update, out)
            return
        old = self._table.get(update.node)
        if old is None and len(self._table) >= self.config.max_members:
            # A full table ignores new names: invented members cannot grow it.
            self._counters.members_refused += 1
            return
        confirmation = (isinstance(update, fr.Suspect) and old is not None
                        and old.status is Status.SUSPECT
                        and old.incarnation == update.incarnation)
        new = self._table.merge(update, now)
        if confirmation:
            assert isinstance(update, fr.Suspect)
            self._confirm(now, update, out)
        if new is None:
            return
        if not confirmation:
            self._queue.push(update)  # re-gossip what we accepted
        out.append(MemberChanged(new.node, new.address, new.status, new.incarnation))
        if old is None:
            self._order.add(new.node)
        if new.status is Status.SUSPECT:
            if not confirmation:
                sender = update.sender if isinstance(update, fr.Suspect) else self.node_id
                self._start_suspicion(now, new, sender, out)
        else:
            self._suspicions.pop(new.node, None)

    def _about_self(self, now: float, update: fr.Update, out: list[Action]) -> None:
        if self._left:
            return  # we are going; do not argue
        if isinstance(update, fr.Alive):
            stale = update.incarnation < self._incarnation or (
                update.incarnation == self._incarnation and update.address == self.address)
            if stale:
                return
        elif update.incarnation < self._incarnation:
            # An accusation we already refuted: whoever sent it missed our
            # refutation (its retransmissions may be used up). Queue it again
            # so the ack or gossip we send next carries it back.
            self._queue.push(fr.Alive(self.node_id, self.address, self._incarnation))
            return
        claims_live = isinstance(update, fr.Alive | fr.Suspect)
        if update.address != self.address and claims_live:
            # Our id is live at another address: our previous life or an
            # impostor. Wait until it is dead before taking the id over.
            self._counters.address_conflicts += 1
            return
        # Saturates: a received accusation is below MAX_INCARNATION (see
        # _in_bounds), so the refutation still beats it.
        self._incarnation = min(update.incarnation + 1, fr.MAX_INCARNATION)
        self._table.force(MemberRecord(self.node_id, self.address, Status.ALIVE,
                                       self._incarnation, now))
        self._queue.push(fr.Alive(self.node_id, self.address, self._incarnation))
        out.append(MemberChanged(self.node_id, self.address, Status.ALIVE, self._incarnation))
        self._counters.refutations += 1
        if not isinstance(update, fr.Alive):
            # Lifeguard: being suspected hints that we are the slow one.
            self._awareness.apply(1)

    def _live_count(self) -> int:
        return sum(1 for r in self._table if r.live)

    def _start_suspicion(self, now: float, rec: MemberRecord, sender: str,
                         out: list[Action]) -> None:
        cfg = self.config
        n = self._live_count()
        low, high = suspicion_bounds(cfg.suspicion_mult, cfg.suspicion_max_timeout_mult, n,
                                     cfg.probe_interval)
        k = expected_confirmations(cfg.suspicion_mult, n, dynamic=cfg.dynamic_suspicion)
        s = Suspicion(rec.node, rec.incarnation, now, low, high, k, {sender})
        self._suspicions[rec.node] = s
        self._set_timer(out, ("suspicion", rec.node), s.deadline())

    def _confirm(self, now: float, update: fr.Suspect, out: list[Action]) -> None:
        s = self._suspicions.get(update.node)
        if s is None or s.incarnation != update.incarnation or not s.confirm(update.sender):
            return
        self._counters.suspicion_confirmations += 1
        # Pass independent confirmations on, so others' timers shrink too.
        self._queue.push(update)
        self._set_timer(out, ("suspicion", update.node), s.deadline())

    def _on_suspicion_timeout(self, now: float, node: str, out: list[Action]) -> None:
        s = self._suspicions.pop(node, None)
        rec = self._table.get(node)
        if s is None or rec is None or rec.status is not Status.SUSPECT:
            return
        if rec.incarnation != s.incarnation:
            return
        self._counters.dead_declared += 1
        self._apply(now, fr.Dead(node, rec.address, rec.incarnation, self.node_id), out)

    # ------------------------------------------------------------------
    # Gossip, push-pull, re-merge

    def _on_gossip_tick(self, now: float, out: list[Action]) -> None:
        self._set_timer(out, GOSSIP, now + self.config.gossip_interval)
        if not len(self._queue):
            return
        horizon = now - self.config.gossip_to_the_dead_time
        targets = [r for r in self._table if r.node != self.node_id
                   and (r.live or r.changed_at >= horizon)]
        for r in self._sample(targets, self.config.gossip_nodes):
            g = self._with_updates(fr.Gossip(self.node_id))
            if not g.updates:
                break
            self._send(out, r.address, g, node=r.node)

    def _push_pull_interval(self) -> float:
        # memberlist's pushPullScale: above 32 members, back off
        # logarithmically so full-state traffic does not grow with N.
        n = len(self._table)
        if n <= 32:
            return self.config.push_pull_interval
        mult = math.ceil(math.log2(n) - math.log2(32)) + 1
        return self.config.push_pull_interval * mult

    def _on_push_pull_tick(self, now: float, out: list[Action]) -> None:
        peers: list[tuple[str, str | None]] = [(r.address, r.node) for r in self._alive_peers()]
        alone = not peers and bool(self._seeds)
        interval = self.config.join_retry_interval if alone else self._push_pull_interval()
        self._set_timer(out, PUSH_PULL, now + interval)
        if self._left:
            return
        if alone:
            peers = [(seed, None) for seed in self._seeds]  # still alone: keep trying them
        for addr, node in self._sample(peers, 1):
            self._send_push_pull(out, addr, node, join=alone)

    def _on_reconnect_tick(self, now: float, out: list[Action]) -> None:
        cfg = self.config
        self._set_timer(out, RECONNECT, now + cfg.reconnect_interval)
        for r in list(self._table):
            gone = r.status in (Status.DEAD, Status.LEFT)
            if gone and r.node != self.node_id and now - r.changed_at > cfg.tombstone_ttl:
                self._table.remove(r.node)
                self._counters.tombstones_reaped += 1
        if self._left:
            return
        dead = [r for r in self._table if r.status is Status.DEAD
                and r.node != self.node_id and now - r.changed_at <= cfg.reconnect_period]
        for r in self._sample(dead, 1):
            self._counters.reconnect_attempts += 1
            self._send_push_pull(out, r.address, r.node, join=False)
        # Founding nodes that start together can pair off before all of them
        # listen ({1,2} and {3,4}); no longer alone, neither pair would retry
        # its seeds, and they would stay two clusters. A seed address that no
        # member of ours holds is tried here until someone there is known.
        known = {r.address for r in self._table}
        strangers = [seed for seed in self._seeds if seed not in known]
        for seed in self._sample(strangers, 1):
            self._counters.reconnect_attempts += 1
            self._send_push_pull(out, seed, None, join=True)

    def _send_push_pull(self, out: list[Action], addr: str, node: str | None, *,
                        join: bool) -> None:
        """`node` is the member expected at `addr`; None for a seed not known yet."""
        self._counters.push_pulls_sent += 1
        req = fr.PushPullRequest(self._next_seq(), self.node_id, self.address, join,
                                 self._states())
        self._send(out, addr, req, node=node, stream=True)

    def _states(self) -> tuple[fr.MemberState, ...]:
        return tuple(fr.MemberState(r.node, r.address, r.status, r.incarnation)
                     for r in self._table)

    def _merge_states(self, now: float, source: str, states: Iterable[fr.MemberState],
                      out: list[Action]) -> None:
        for s in states:
            u: fr.Update
            if s.status is Status.ALIVE:
                u = fr.Alive(s.node, s.address, s.incarnation)
            elif s.status is Status.LEFT:
                u = fr.Leave(s.node, s.address, s.incarnation)
            elif s.status is Status.DEAD and s.node == self.node_id:
                # About ourselves "dead" must stay dead: it is what lets a
                # restarted node take its id back (see _about_self).
                u = fr.Dead(s.node, s.address, s.incarnation, source)
            else:
                # memberlist: a remote "dead" is merged as "suspect", so the
                # accused can still refute before anyone here declares it dead.
                u = fr.Suspect(s.node, s.address, s.incarnation, source)
            self._apply_all(now, (u,), out)

    # ------------------------------------------------------------------
    # Helpers

    def _live_peers(self) -> list[MemberRecord]:
        return [r for r in self._table if r.live and r.node != self.node_id]

    def _alive_peers(self) -> list[MemberRecord]:
        """Peers known alive (not suspect): whom a push-pull goes to."""
        return [r for r in self._table if r.status is Status.ALIVE and r.node != self.node_id]

    def _sample(self, items: Sequence[_T], k: int) -> list[_T]:
        return self._rng.sample(list(items), min(k, len(items)))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _set_timer(self, out: list[Action], key: TimerKey, at: float) -> None:
        self._timers[key] = at
        out.append(SetTimer(at, key))

    def _send(self, out: list[Action], to: str, frame: fr.Frame, *, node: str | None,
              stream: bool = False) -> None:
        self._counters.frames_sent[frame.TYPE] += 1
        out.append(Send(to, frame, stream, node))

    def _with_updates(self, frame: _F, prefix: Sequence[fr.Update] = ()) -> _F:
        """`frame` with as many queued updates as fit in the packet budget."""
        overhead = len(fr.encode(frame, cluster=self.config.cluster)) + _LIST_HEADER
        budget = self.config.packet_budget - overhead
        budget -= sum(fr.encoded_update_size(u) for u in prefix)
        limit = retransmit_limit(self.config.retransmit_mult, len(self._table))
        taken: list[fr.Update] = self._queue.take(budget, limit)
        if prefix:
            skip = {u.node for u in prefix}
            taken = [u for u in taken if u.node not in skip]
        updates = (*prefix, *taken)
        if not updates:
            return frame
        return dataclasses.replace(frame, updates=updates)
