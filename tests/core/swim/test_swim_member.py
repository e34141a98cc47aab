"""Unit tests for rimio.core.swim.Member, driven by hand with explicit times."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import pytest

from rimio.core import frames as fr
from rimio.core.frames import Status
from rimio.core.swim import (
    Action,
    Member,
    MemberChanged,
    Send,
    SetTimer,
    SwimConfig,
    TimerKey,
    UserMessage,
)

# Tests fire timers at hand-picked times; late-timer detection is tested on its own.
CFG = SwimConfig(cluster="t", detect_late_timers=False)
ME = "me"
ME_ADDR = "h0:1"


def addr(i: int) -> str:
    return f"h{i}:1"


class Observed(Member):
    """A `Member` that remembers the latest deadline it asked for per timer key.

    The deadlines are learned only from the `SetTimer` actions the public
    inputs return, as a shell would learn them, so the tests never read the
    machine's private timer table. (A key that has fired keeps its last
    deadline here; the tests only look up keys the machine has re-armed.)
    """

    def __init__(self, config: SwimConfig, node_id: str, address: str, seed: int,
                 now: float) -> None:
        super().__init__(config, node_id, address, seed, now)
        self.timers: dict[TimerKey, float] = {}

    def _seen(self, actions: list[Action]) -> list[Action]:
        self.timers.update(timers(actions))
        return actions

    def start(self, now: float) -> list[Action]:
        return self._seen(super().start(now))

    def join(self, now: float, seeds: Sequence[str]) -> list[Action]:
        return self._seen(super().join(now, seeds))

    def leave(self, now: float) -> list[Action]:
        return self._seen(super().leave(now))

    def report_loop_lag(self, now: float, seconds: float) -> list[Action]:
        return self._seen(super().report_loop_lag(now, seconds))

    def handle_data(self, now: float, from_addr: str, data: bytes) -> list[Action]:
        return self._seen(super().handle_data(now, from_addr, data))

    def handle_frame(self, now: float, from_addr: str, frame: fr.Frame) -> list[Action]:
        return self._seen(super().handle_frame(now, from_addr, frame))

    def handle_timer(self, now: float, key: TimerKey) -> list[Action]:
        return self._seen(super().handle_timer(now, key))


def make(peers: int = 4, config: SwimConfig = CFG, *, seed: int = 7) -> Observed:
    m = Observed(config, ME, ME_ADDR, seed, 0.0)
    m.start(0.0)
    for i in range(1, peers + 1):
        m.handle_frame(0.0, addr(i), fr.Alive(f"p{i}", addr(i), 0))
    return m


def sends(actions: Sequence[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def timers(actions: Sequence[Action]) -> dict[TimerKey, float]:
    return {a.key: a.at for a in actions if isinstance(a, SetTimer)}


def changes(actions: Sequence[Action]) -> list[MemberChanged]:
    return [a for a in actions if isinstance(a, MemberChanged)]


def probe(m: Member, now: float) -> tuple[Send, dict[TimerKey, float]]:
    """Fire the probe timer; return the ping sent and the timers set."""
    acts = m.handle_timer(now, ("probe", ""))
    pings = [s for s in sends(acts) if isinstance(s.frame, fr.Ping)]
    assert len(pings) == 1
    return pings[0], timers(acts)


def next_probe_at(m: Observed) -> float:
    return m.timers[("probe", "")]


def fail_probe(m: Member, now: float) -> tuple[fr.Ping, list[Action]]:
    """Probe at `now`, let the ack timeout and the period pass without answers."""
    send, t = probe(m, now)
    assert isinstance(send.frame, fr.Ping)
    seq = send.frame.seq
    m.handle_timer(t[("ack", str(seq))], ("ack", str(seq)))
    end = t[("probe-end", str(seq))]
    return send.frame, m.handle_timer(end, ("probe-end", str(seq)))


def test_start_arms_periodic_timers() -> None:
    m = Member(CFG, ME, ME_ADDR, 1, 100.0)
    keys = timers(m.start(100.0))
    assert set(keys) == {("probe", ""), ("gossip", ""), ("push-pull", ""), ("reconnect", "")}
    assert all(100.0 <= at <= 100.0 + 30.0 for at in keys.values())


def test_new_members_reported_and_listed() -> None:
    m = Member(CFG, ME, ME_ADDR, 1, 0.0)
    acts = m.handle_frame(0.0, addr(1), fr.Alive("p1", addr(1), 3))
    assert changes(acts) == [MemberChanged("p1", addr(1), Status.ALIVE, 3)]
    assert [(v.node_id, v.status, v.incarnation) for v in m.members()] == [
        (ME, Status.ALIVE, 0), ("p1", Status.ALIVE, 3)]


def test_probe_round_robin_visits_everyone_each_pass() -> None:
    m = make(peers=5)
    now = 1.0
    seen: list[str] = []
    for _ in range(10):
        send, t = probe(m, now)
        assert isinstance(send.frame, fr.Ping)
        seen.append(send.frame.target)
        m.handle_frame(now, send.to, fr.Ack(send.frame.seq, send.frame.target))
        now = t[("probe", "")]
    assert sorted(seen[:5]) == sorted(seen[5:]) == [f"p{i}" for i in range(1, 6)]
    assert seen[:5] != seen[5:]  # reshuffled (fixed seed, so this is deterministic)


def test_ping_is_answered_with_ack_to_source_address() -> None:
    m = make()
    acts = m.handle_frame(1.0, "ephemeral:5555", fr.Ping(9, ME, "p1", addr(1)))
    (s,) = sends(acts)
    assert s.to == addr(1)
    assert isinstance(s.frame, fr.Ack)
    assert (s.frame.seq, s.frame.source) == (9, ME)


def test_ping_for_another_node_is_not_answered() -> None:
    m = make()
    assert sends(m.handle_frame(1.0, addr(1), fr.Ping(9, "someone-else", "p1", addr(1)))) == []
    assert m.stats().misdirected_pings == 1


def test_ack_timeout_sends_indirect_probes_with_nack() -> None:
    m = make(peers=5)
    send, t = probe(m, 1.0)
    assert isinstance(send.frame, fr.Ping)
    seq = send.frame.seq
    assert t[("ack", str(seq))] == pytest.approx(1.5)
    assert t[("probe-end", str(seq))] == pytest.approx(2.0)
    acts = m.handle_timer(1.5, ("ack", str(seq)))
    reqs = [s for s in sends(acts) if isinstance(s.frame, fr.PingReq)]
    assert len(reqs) == CFG.indirect_checks
    assert len({s.to for s in reqs}) == 3 and send.to not in {s.to for s in reqs}
    for s in reqs:
        assert isinstance(s.frame, fr.PingReq)
        assert s.frame.target == send.frame.target and s.frame.want_nack


def test_indirect_ack_before_period_end_keeps_member_alive() -> None:
    m = make(peers=5)
    send, _t = probe(m, 1.0)
    assert isinstance(send.frame, fr.Ping)
    seq, target = send.frame.seq, send.frame.target
    m.handle_timer(1.5, ("ack", str(seq)))
    m.handle_frame(1.8, addr(2), fr.Ack(seq, target))  # forwarded by a relay
    assert m.handle_timer(2.0, ("probe-end", str(seq))) == []
    view = m.member(target)
    assert view is not None and view.status is Status.ALIVE
    assert m.stats().probe_failures == 0


def test_failed_probe_suspects_and_raises_awareness_by_missing_nacks() -> None:
    m = make(peers=5)
    ping, acts = fail_probe(m, 1.0)
    assert changes(acts) == [MemberChanged(ping.target, addr(int(ping.target[1:])),
                                           Status.SUSPECT, 0)]
    assert m.awareness == 3  # three helpers asked, no nack came back
    assert m.stats().suspicions_started == 1


def test_nacks_show_the_target_is_the_problem_not_us() -> None:
    m = make(peers=5)
    send, _t = probe(m, 1.0)
    assert isinstance(send.frame, fr.Ping)
    seq = send.frame.seq
    acts = m.handle_timer(1.5, ("ack", str(seq)))
    for s in sends(acts):
        m.handle_frame(1.9, s.to, fr.Nack(seq, "x"))
    m.handle_timer(2.0, ("probe-end", str(seq)))
    assert m.awareness == 0
    assert m.stats().nacks_received == 3


def test_awareness_scales_probe_interval_and_recovers() -> None:
    m = make(peers=5)
    fail_probe(m, 1.0)
    assert m.awareness == 3
    send, t = probe(m, 10.0)
    assert t[("probe", "")] == pytest.approx(10.0 + 4 * CFG.probe_interval)
    assert isinstance(send.frame, fr.Ping)
    assert t[("ack", str(send.frame.seq))] == pytest.approx(10.0 + 4 * CFG.probe_timeout)
    m.handle_frame(10.1, send.to, fr.Ack(send.frame.seq, send.frame.target))
    assert m.awareness == 2


def test_awareness_can_be_switched_off() -> None:
    m = make(peers=5, config=replace(CFG, awareness=False))
    fail_probe(m, 1.0)
    m.report_loop_lag(3.0, 5.0)
    assert m.awareness == 0


def test_loop_lag_raises_awareness_and_late_timers_count_as_lag() -> None:
    m = make()
    m.report_loop_lag(1.0, 0.01)
    assert m.awareness == 0
    m.report_loop_lag(1.0, 2.5)
    assert m.awareness == 3
    m2 = make(config=SwimConfig(cluster="t"))
    at = next_probe_at(m2)
    m2.handle_timer(at + 3.0, ("probe", ""))
    assert m2.awareness >= 1 and m2.stats().late_timers == 1


def test_awareness_is_bounded() -> None:
    m = make()
    for _ in range(10):
        m.report_loop_lag(1.0, 100.0)
    assert m.awareness == CFG.awareness_max_multiplier - 1


def _suspect_deadline(acts: Sequence[Action], node: str) -> float:
    return timers(acts)[("suspicion", node)]


def test_dynamic_suspicion_shrinks_with_confirmations() -> None:
    m = make(peers=9)  # n = 10 live members: min 4 s, max 24 s, k = 2
    acts = m.handle_frame(5.0, addr(1), fr.Suspect("p3", addr(3), 0, "p1"))
    assert _suspect_deadline(acts, "p3") == pytest.approx(5.0 + 24.0)
    acts = m.handle_frame(6.0, addr(2), fr.Suspect("p3", addr(3), 0, "p2"))
    frac = math.log(2) / math.log(3)
    assert _suspect_deadline(acts, "p3") == pytest.approx(5.0 + 24.0 - frac * 20.0, abs=1e-3)
    assert m.handle_frame(6.5, addr(2), fr.Suspect("p3", addr(3), 0, "p2")) == []  # not new
    acts = m.handle_frame(7.0, addr(4), fr.Suspect("p3", addr(3), 0, "p4"))
    assert _suspect_deadline(acts, "p3") == pytest.approx(5.0 + 4.0)
    assert m.stats().suspicion_confirmations == 2


def test_fixed_suspicion_when_dynamic_is_off() -> None:
    m = make(peers=9, config=replace(CFG, dynamic_suspicion=False))
    acts = m.handle_frame(5.0, addr(1), fr.Suspect("p3", addr(3), 0, "p1"))
    assert _suspect_deadline(acts, "p3") == pytest.approx(9.0)


def test_suspicion_timeout_declares_dead_unless_refuted() -> None:
    m = make(peers=3)
    acts = m.handle_frame(5.0, addr(1), fr.Suspect("p3", addr(3), 0, "p1"))
    at = _suspect_deadline(acts, "p3")
    acts = m.handle_timer(at, ("suspicion", "p3"))
    assert changes(acts) == [MemberChanged("p3", addr(3), Status.DEAD, 0)]
    assert m.stats().dead_declared == 1

    m = make(peers=3)
    acts = m.handle_frame(5.0, addr(1), fr.Suspect("p3", addr(3), 0, "p1"))
    at = _suspect_deadline(acts, "p3")
    m.handle_frame(6.0, addr(3), fr.Alive("p3", addr(3), 1))
    assert m.handle_timer(at, ("suspicion", "p3")) == []
    view = m.member("p3")
    assert view is not None and (view.status, view.incarnation) == (Status.ALIVE, 1)


@pytest.mark.parametrize("buddy", [True, False])
def test_buddy_system_tells_the_suspect(buddy: bool) -> None:
    m = make(peers=1, config=replace(CFG, buddy_system=buddy))
    m.handle_frame(1.0, addr(1), fr.Suspect("p1", addr(1), 0, "zz"))
    send, _ = probe(m, 2.0)
    assert isinstance(send.frame, fr.Ping)
    carried = [u for u in send.frame.updates
               if isinstance(u, fr.Suspect) and u.node == "p1" and u.sender == ME]
    assert bool(carried) is buddy
    if buddy:
        assert send.frame.updates[0] == fr.Suspect("p1", addr(1), 0, ME)


def test_refutes_suspicion_of_itself_and_says_so_in_the_ack() -> None:
    m = make()
    acts = m.handle_frame(1.0, addr(1), fr.Ping(4, ME, "p1", addr(1),
                                                (fr.Suspect(ME, ME_ADDR, 0, "p1"),)))
    assert m.incarnation == 1
    assert m.awareness == 1
    assert MemberChanged(ME, ME_ADDR, Status.ALIVE, 1) in changes(acts)
    (ack,) = sends(acts)
    assert isinstance(ack.frame, fr.Ack)
    assert fr.Alive(ME, ME_ADDR, 1) in ack.frame.updates
    assert m.stats().refutations == 1


def test_stale_claims_about_itself_are_ignored() -> None:
    m = make()
    m.handle_frame(1.0, addr(1), fr.Suspect(ME, ME_ADDR, 0, "p1"))
    assert m.incarnation == 1
    m.handle_frame(1.0, addr(1), fr.Dead(ME, ME_ADDR, 0, "p1"))
    m.handle_frame(1.0, addr(1), fr.Alive(ME, ME_ADDR, 1))
    assert m.incarnation == 1


def test_stale_accusation_is_answered_with_the_current_refutation() -> None:
    m = make()
    m.handle_frame(1.0, addr(1), fr.Suspect(ME, ME_ADDR, 0, "p1"))
    for i in range(20):  # use up the refutation's retransmissions
        m.handle_frame(2.0, addr(1), fr.Ping(i, ME, "p1", addr(1)))
    assert m.pending_updates() == []
    acts = m.handle_frame(3.0, addr(2), fr.Ping(99, ME, "p2", addr(2),
                                                (fr.Suspect(ME, ME_ADDR, 0, "p2"),)))
    (ack,) = sends(acts)
    assert isinstance(ack.frame, fr.Ack) and fr.Alive(ME, ME_ADDR, 1) in ack.frame.updates
    assert m.incarnation == 1


def test_restart_at_same_address_takes_a_higher_incarnation() -> None:
    m = make()
    m.handle_frame(1.0, addr(1), fr.Alive(ME, ME_ADDR, 5))  # our previous life
    assert m.incarnation == 6
    view = m.member(ME)
    assert view is not None and (view.status, view.incarnation) == (Status.ALIVE, 6)


def test_new_address_waits_until_old_entry_is_dead() -> None:
    m = make()
    m.handle_frame(1.0, addr(1), fr.Alive(ME, "old:1", 5))
    m.handle_frame(1.0, addr(1), fr.Suspect(ME, "old:1", 5, "p1"))
    assert m.incarnation == 0 and m.stats().address_conflicts == 2
    acts = m.handle_frame(2.0, addr(1), fr.Dead(ME, "old:1", 5, "p1"))
    assert m.incarnation == 6
    assert MemberChanged(ME, ME_ADDR, Status.ALIVE, 6) in changes(acts)


def test_peer_with_higher_incarnation_moves_to_new_address() -> None:
    m = make()
    m.handle_frame(1.0, addr(1), fr.Dead("p2", addr(2), 0, "p1"))
    acts = m.handle_frame(2.0, "new:9", fr.Alive("p2", "new:9", 1))
    assert changes(acts) == [MemberChanged("p2", "new:9", Status.ALIVE, 1)]


def test_ping_from_an_unknown_member_pulls_state_from_a_known_one_once() -> None:
    m = make(peers=1)
    acts = m.handle_frame(1.0, addr(7), fr.Ping(1, ME, "p7", addr(7)))
    # Nothing goes to the unknown pinger's address (a claim in its frame):
    # no ack, and the pull goes to a member we know.
    assert all(s.to != addr(7) for s in sends(acts))
    pulls = [s for s in sends(acts) if isinstance(s.frame, fr.PushPullRequest)]
    assert [(s.to, s.node) for s in pulls] == [(addr(1), "p1")]
    acts = m.handle_frame(2.0, addr(7), fr.Ping(2, ME, "p7", addr(7)))
    assert [s for s in sends(acts) if isinstance(s.frame, fr.PushPullRequest)] == []
    acts = m.handle_frame(3.0, addr(1), fr.Ping(3, ME, "p1", addr(1)))  # known: no pull
    assert [s for s in sends(acts) if isinstance(s.frame, fr.PushPullRequest)] == []


def test_ping_req_relay_forwards_ack_or_sends_nack() -> None:
    m = make()
    acts = m.handle_frame(1.0, addr(1), fr.PingReq(77, "p2", addr(2), "p1", addr(1), True))
    (ping,) = sends(acts)
    assert ping.to == addr(2) and isinstance(ping.frame, fr.Ping)
    assert ping.frame.target == "p2"
    relay_seq = ping.frame.seq
    acts = m.handle_frame(1.1, addr(2), fr.Ack(relay_seq, "p2"))
    (fwd,) = sends(acts)
    assert fwd.to == addr(1) and isinstance(fwd.frame, fr.Ack)
    assert (fwd.frame.seq, fwd.frame.source) == (77, "p2")
    assert sends(m.handle_timer(1.5, ("relay", str(relay_seq)))) == []  # already answered

    acts = m.handle_frame(2.0, addr(1), fr.PingReq(78, "p3", addr(3), "p1", addr(1), True))
    (ping,) = sends(acts)
    assert isinstance(ping.frame, fr.Ping)
    seq = str(ping.frame.seq)
    nack_at, relay_at = timers(acts)[("nack", seq)], timers(acts)[("relay", seq)]
    # The nack must reach the requester before its probe period ends: it sent
    # the ping-req probe_timeout into the period, so less than
    # probe_interval - probe_timeout remains for relay + network.
    assert nack_at - 2.0 < CFG.probe_interval - CFG.probe_timeout
    (nack,) = sends(m.handle_timer(nack_at, ("nack", seq)))
    assert nack.to == addr(1) and nack.frame == fr.Nack(78, ME)
    # a late ack is still forwarded until the relay gives up
    late = m.handle_frame(nack_at + 0.01, addr(3), fr.Ack(ping.frame.seq, "p3"))
    assert [(s.to, s.frame.seq, s.frame.source) for s in sends(late)] == [(addr(1), 78, "p3")]
    assert sends(m.handle_timer(relay_at, ("relay", seq))) == []


def test_no_nack_when_the_target_answered() -> None:
    m = make()
    acts = m.handle_frame(2.0, addr(1), fr.PingReq(79, "p3", addr(3), "p1", addr(1), True))
    (ping,) = sends(acts)
    m.handle_frame(2.1, addr(3), fr.Ack(ping.frame.seq, "p3"))
    assert sends(m.handle_timer(timers(acts)[("nack", str(ping.frame.seq))],
                                ("nack", str(ping.frame.seq)))) == []


def test_relays_are_bounded() -> None:
    m = make(config=replace(CFG, max_relays=2))
    for seq in range(3):
        m.handle_frame(1.0, addr(1), fr.PingReq(seq, "p2", addr(2), "p1", addr(1), True))
    assert m.stats().relays_refused == 1


def test_updates_are_retransmitted_a_bounded_number_of_times() -> None:
    m = make(peers=4)  # n = 5: limit = 4 * ceil(log10(6)) = 4
    m.handle_frame(1.0, addr(1), fr.Alive("p9", addr(9), 0))
    carried = 0
    for i in range(10):
        acts = m.handle_frame(2.0 + i, addr(1), fr.Ping(i, ME, "p1", addr(1)))
        (ack,) = sends(acts)
        assert isinstance(ack.frame, fr.Ack)
        carried += any(u.node == "p9" for u in ack.frame.updates)
    assert carried == CFG.retransmit_mult * math.ceil(math.log10(6 + 1))


def test_newer_update_supersedes_queued_one() -> None:
    m = make(peers=2)
    m.handle_frame(1.0, addr(1), fr.Suspect("p2", addr(2), 0, "p1"))
    m.handle_frame(1.0, addr(2), fr.Alive("p2", addr(2), 1))
    about = [u for u in m.pending_updates() if u.node == "p2"]
    assert about == [fr.Alive("p2", addr(2), 1)]


def test_packets_respect_the_byte_budget_and_queue_is_bounded() -> None:
    cfg = replace(CFG, packet_budget=400, max_broadcast_queue=50)
    m = make(peers=0, config=cfg)
    m.handle_frame(1.0, addr(1), fr.Gossip("x", tuple(
        fr.Alive(f"node-with-a-long-name-{i:03d}", f"10.0.0.{i}:7000", 0) for i in range(80))))
    assert m.stats().queue_drops == 30 and m.stats().queue_length == 50
    pinger = "node-with-a-long-name-000"  # acks go only to members we know
    acts = m.handle_frame(2.0, "10.0.0.0:7000", fr.Ping(1, ME, pinger, "10.0.0.0:7000"))
    (ack,) = [s for s in sends(acts) if isinstance(s.frame, fr.Ack)]
    size = len(fr.encode(ack.frame, cluster="t"))
    assert size <= 400
    assert isinstance(ack.frame, fr.Ack) and len(ack.frame.updates) >= 5


def test_gossip_goes_to_a_few_random_members_only_when_there_is_news() -> None:
    m = make(peers=6)
    at = m.timers[("gossip", "")]
    acts = m.handle_timer(at, ("gossip", ""))
    gossips = [s for s in sends(acts) if isinstance(s.frame, fr.Gossip)]
    assert len(gossips) == CFG.gossip_nodes
    # Drain the queue, then a tick sends nothing.
    for i in range(20):
        m.handle_frame(1.0, addr(1), fr.Ping(i, ME, "p1", addr(1)))
    at = m.timers[("gossip", "")]
    assert sends(m.handle_timer(at, ("gossip", ""))) == []


def test_push_pull_merges_and_answers_on_the_stream() -> None:
    m = make(peers=2)
    req = fr.PushPullRequest(5, "q1", "q1:1", True, (
        fr.MemberState("q1", "q1:1", Status.ALIVE, 2),
        fr.MemberState("p1", addr(1), Status.DEAD, 0),
        fr.MemberState("q2", "q2:1", Status.LEFT, 4),
    ))
    acts = m.handle_frame(1.0, "ephemeral:1", req)
    (resp,) = sends(acts)
    assert resp.stream and resp.to == "q1:1" and isinstance(resp.frame, fr.PushPullResponse)
    rows = {s.node: s.status for s in resp.frame.states}
    assert rows == {ME: Status.ALIVE, "p1": Status.SUSPECT, "p2": Status.ALIVE,
                    "q1": Status.ALIVE, "q2": Status.LEFT}  # remote dead merged as suspect


def test_periodic_push_pull_and_join_retry_through_seeds() -> None:
    m = Observed(CFG, ME, ME_ADDR, 3, 0.0)
    m.start(0.0)
    acts = m.join(0.0, ["s1:1", ME_ADDR, "s2:1"])
    assert sorted(s.to for s in sends(acts)) == ["s1:1", "s2:1"]
    assert all(isinstance(s.frame, fr.PushPullRequest) and s.frame.join for s in sends(acts))
    at = m.timers[("push-pull", "")]
    assert at == pytest.approx(CFG.join_retry_interval)
    acts = m.handle_timer(at, ("push-pull", ""))
    (retry,) = sends(acts)
    assert retry.to in {"s1:1", "s2:1"} and retry.stream
    assert timers(acts)[("push-pull", "")] == pytest.approx(2 * CFG.join_retry_interval)
    m.handle_frame(at, "s1:1", fr.PushPullResponse(1, "s1", (
        fr.MemberState("s1", "s1:1", Status.ALIVE, 0),)))
    at = m.timers[("push-pull", "")]
    acts = m.handle_timer(at, ("push-pull", ""))
    (periodic,) = sends(acts)
    assert periodic.to == "s1:1"
    assert timers(acts)[("push-pull", "")] == pytest.approx(at + CFG.push_pull_interval)


def test_reconnect_push_pulls_recently_dead_but_not_left_or_expired() -> None:
    cfg = replace(CFG, reconnect_period=100.0, tombstone_ttl=1000.0)
    m = make(peers=3, config=cfg)
    m.handle_frame(1.0, addr(1), fr.Dead("p1", addr(1), 0, "x"))
    m.handle_frame(1.0, addr(2), fr.Leave("p2", addr(2), 0))
    at = m.timers[("reconnect", "")]
    (s,) = sends(m.handle_timer(at, ("reconnect", "")))
    assert s.to == addr(1) and isinstance(s.frame, fr.PushPullRequest)
    assert m.stats().reconnect_attempts == 1
    assert sends(m.handle_timer(500.0, ("reconnect", ""))) == []  # beyond reconnect_period
    m.handle_timer(1500.0, ("reconnect", ""))
    assert m.member("p1") is None and m.member("p2") is None  # tombstones reaped


def test_reconnect_tries_seeds_no_member_holds_so_islands_merge() -> None:
    # Two founders paired off while the others were not listening yet: not
    # alone any more, but seed h3:1 is nobody this node knows.
    m = Observed(CFG, ME, ME_ADDR, 7, 0.0)
    m.start(0.0)
    m.join(0.0, [addr(1), addr(3)])
    m.handle_frame(0.5, addr(1), fr.Alive("p1", addr(1), 0))
    at = m.timers[("reconnect", "")]
    (s,) = sends(m.handle_timer(at, ("reconnect", "")))
    assert s.to == addr(3) and isinstance(s.frame, fr.PushPullRequest) and s.frame.join
    # once a member holds that address, the seed is not tried again
    m.handle_frame(at, addr(3), fr.Alive("p3", addr(3), 0))
    at = m.timers[("reconnect", "")]
    assert sends(m.handle_timer(at, ("reconnect", ""))) == []


def test_leave_announces_and_stops_probing() -> None:
    m = make(peers=3)
    acts = m.leave(1.0)
    assert MemberChanged(ME, ME_ADDR, Status.LEFT, 0) in changes(acts)
    gossips = sends(acts)
    assert len(gossips) == 3
    assert all(fr.Leave(ME, ME_ADDR, 0) in s.frame.updates for s in gossips
               if isinstance(s.frame, fr.Gossip))
    acts = m.handle_timer(next_probe_at(m), ("probe", ""))
    assert not [s for s in sends(acts) if isinstance(s.frame, fr.Ping)]
    m.handle_frame(2.0, addr(1), fr.Suspect(ME, ME_ADDR, 0, "p1"))
    assert m.incarnation == 0 and m.has_left


def test_stale_and_early_timers_are_ignored() -> None:
    m = make()
    at = next_probe_at(m)
    assert m.handle_timer(at - 0.1, ("probe", "")) == []
    assert m.handle_timer(at, ("ack", "12345")) == []
    assert m.handle_timer(at, ("probe", "")) != []
    assert m.handle_timer(at, ("probe", "")) == []  # already fired


def test_bad_bytes_are_counted_by_reason() -> None:
    m = make()
    other = fr.encode(fr.Nack(1, "x"), cluster="other")
    assert m.handle_data(1.0, addr(1), other) == []
    assert m.handle_data(1.0, addr(1), b"\xc1") == []
    unknown = fr.encode(fr.Nack(1, "x"), cluster="t").replace(b"nack", b"nick")
    assert m.handle_data(1.0, addr(1), unknown) == []
    st = m.stats()
    assert (st.wrong_cluster_dropped, st.unknown_dropped, st.decode_errors["msgpack"]) == (1, 1, 1)
    good = fr.encode(fr.User("p1", "slotmap", b"\x01"), cluster="t")
    assert m.handle_data(1.0, addr(1), good) == [UserMessage("p1", "slotmap", b"\x01")]
    assert m.stats().frames_received["user"] == 1


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SwimConfig(probe_timeout=2.0, probe_interval=1.0)
    with pytest.raises(ValueError):
        SwimConfig(gossip_nodes=0)
    plain = CFG.plain_swim()
    assert not (plain.awareness or plain.dynamic_suspicion or plain.buddy_system)


def test_updates_beyond_the_incarnation_bound_are_dropped_and_counted() -> None:
    m = make()
    m.handle_frame(1.0, addr(1), fr.Gossip("p1", (
        fr.Alive("p9", addr(9), fr.MAX_INCARNATION + 1),
        fr.Suspect("p1", addr(1), fr.MAX_INCARNATION, "p2"),
        fr.Dead(ME, ME_ADDR, fr.MAX_UINT, "p2"),
    )))
    assert m.stats().incarnations_refused == 3
    assert m.member("p9") is None and m.incarnation == 0
    # an accusation just below the bound is refuted, and the refutation saturates
    m.handle_frame(2.0, addr(1), fr.Dead(ME, ME_ADDR, fr.MAX_INCARNATION - 1, "p1"))
    assert m.incarnation == fr.MAX_INCARNATION
    m.handle_frame(3.0, addr(1), fr.Alive(ME, ME_ADDR, fr.MAX_INCARNATION))
    assert m.incarnation == fr.MAX_INCARNATION


def test_member_table_is_capped() -> None:
    m = make(peers=0, config=replace(CFG, max_members=10))
    flood = tuple(fr.Alive(f"fake-{i}", f"10.9.{i // 250}.{i % 250}:1", 0) for i in range(200))
    m.handle_frame(1.0, addr(1), fr.Gossip("x", flood[:100]))
    m.handle_frame(1.0, addr(1), fr.PushPullRequest(1, "x", addr(1), False, tuple(
        fr.MemberState(u.node, u.address, Status.ALIVE, 0) for u in flood[100:])))
    assert len(m.members()) == 10
    assert m.stats().members_refused == 191 and m.members_refused == 191
    # members already known still get their updates
    acts = m.handle_frame(2.0, addr(1), fr.Alive("fake-0", "10.9.0.0:1", 4))
    assert changes(acts) == [MemberChanged("fake-0", "10.9.0.0:1", Status.ALIVE, 4)]


def test_ping_req_naming_an_unadvertised_address_sends_nothing_there() -> None:
    m = make()
    for req in (fr.PingReq(1, "p2", "victim:80", "p1", addr(1), True),  # p2 is elsewhere
                fr.PingReq(2, "stranger", "victim:80", "p1", addr(1), True),  # unknown
                fr.PingReq(3, "p2", addr(2), "p1", "victim:80", True)):  # requester elsewhere
        acts = m.handle_frame(1.0, "victim:80", req)
        assert sends(acts) == []
    assert m.stats().unadvertised_addresses == 3
    # the transport's source address (`from=`) is never a send target
    acts = m.handle_frame(1.0, "victim:80", fr.PingReq(4, "p2", addr(2), "p1", addr(1), True))
    assert [(s.to, s.node) for s in sends(acts)] == [(addr(2), "p2")]
    acts = m.handle_frame(1.0, "victim:80", fr.Ping(5, ME, "p1", addr(1)))
    assert [s.to for s in sends(acts)] == [addr(1)]


def test_push_pull_from_an_unknown_address_is_answered_only_as_a_reply() -> None:
    m = make(peers=1)
    acts = m.handle_frame(1.0, "x", fr.PushPullRequest(1, "p1", addr(1), False, ()))
    (reply,) = sends(acts)
    assert isinstance(reply.frame, fr.PushPullResponse) and reply.node == "p1"


def test_every_send_names_the_member_expected_at_the_address() -> None:
    m = make(peers=5)
    acts = m.join(0.5, ["seed:1"])
    assert [(s.to, s.node) for s in sends(acts)] == [("seed:1", None)]
    send, t = probe(m, 1.0)
    assert isinstance(send.frame, fr.Ping) and send.node == send.frame.target
    seq = send.frame.seq
    for s in sends(m.handle_timer(t[("ack", str(seq))], ("ack", str(seq)))):
        assert m.member(s.node or "") is not None and m.member(s.node or "").address == s.to  # type: ignore[union-attr]
