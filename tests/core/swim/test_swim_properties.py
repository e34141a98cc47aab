"""Property tests for the SWIM core: order-independent merge, queue and
suspicion invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rimio.core import frames as fr
from rimio.core.swim import Member, SwimConfig
from rimio.core.swim.dissemination import BroadcastQueue
from rimio.core.swim.suspicion import Suspicion, suspicion_bounds
from rimio.core.swim.table import MemberTable

CFG = SwimConfig(cluster="t", detect_late_timers=False)

nodes = st.sampled_from(["a", "b", "c", "d"])
addrs = st.sampled_from(["x:1", "y:1"])
incs = st.integers(0, 3)
senders = st.sampled_from(["s1", "s2", "s3"])
updates: st.SearchStrategy[fr.Update] = st.one_of(
    st.builds(fr.Alive, nodes, addrs, incs),
    st.builds(fr.Suspect, nodes, addrs, incs, senders),
    st.builds(fr.Dead, nodes, addrs, incs, senders),
    st.builds(fr.Leave, nodes, addrs, incs),
)


def table_after(order: list[fr.Update]) -> list[tuple[str, str, str, int]]:
    m = Member(CFG, "me", "me:1", 0, 0.0)
    for i, u in enumerate(order):
        # Mix delivery paths: bare update frames and piggybacked gossip.
        frame: fr.Frame = u if i % 2 else fr.Gossip("g", (u,))
        m.handle_frame(float(i), "z:1", frame)
    return [(v.node_id, v.address, v.status.value, v.incarnation) for v in m.members()]


@settings(max_examples=200)
@given(st.lists(updates, max_size=12), st.randoms(use_true_random=False))
def test_same_updates_in_any_order_give_the_same_table(us: list[fr.Update], rnd: object) -> None:
    shuffled = list(us)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert table_after(us) == table_after(shuffled)


@given(st.lists(updates, min_size=1, max_size=12))
def test_merge_is_idempotent_and_monotone(us: list[fr.Update]) -> None:
    t = MemberTable()
    for u in us:
        before = t.get(u.node)
        t.merge(u, 0.0)
        after = t.get(u.node)
        assert after is not None
        assert before is None or after.key() >= before.key()
        assert t.merge(u, 1.0) is None  # applying the same update again changes nothing


class TwoMembers(RuleBasedStateMachine):
    """Two members receive the same updates, one delayed and reordered; once
    both have everything, their tables agree."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Member(CFG, "me", "me:1", 1, 0.0)
        self.b = Member(CFG, "me", "me:1", 2, 0.0)
        self.backlog: list[fr.Update] = []
        self.t = 0.0

    @rule(u=updates)
    def deliver_to_a(self, u: fr.Update) -> None:
        self.t += 1
        self.a.handle_frame(self.t, "z:1", u)
        self.backlog.append(u)

    @rule(i=st.integers(0, 1000))
    def deliver_one_to_b(self, i: int) -> None:
        if self.backlog:
            self.t += 1
            self.b.handle_frame(self.t, "z:1", self.backlog.pop(i % len(self.backlog)))

    @rule(states=st.lists(st.tuples(nodes, addrs, st.sampled_from(list(fr.Status)), incs),
                          max_size=4))
    def push_pull_to_both(self, states: list[tuple[str, str, fr.Status, int]]) -> None:
        self.t += 1
        req = fr.PushPullResponse(1, "q", tuple(fr.MemberState(*s) for s in states))
        self.a.handle_frame(self.t, "z:1", req)
        self.b.handle_frame(self.t, "z:1", req)

    @invariant()
    def agree_when_caught_up(self) -> None:
        if not self.backlog:
            assert self.a.members() == self.b.members()


TestTwoMembers = TwoMembers.TestCase
TestTwoMembers.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)


many_nodes = st.builds(fr.Alive, st.integers(0, 40).map(str), addrs, incs)


@given(st.lists(many_nodes, max_size=60), st.integers(200, 1400), st.integers(1, 6))
def test_queue_is_bounded_packs_within_budget_and_respects_limit(
        us: list[fr.Update], budget: int, limit: int) -> None:
    q = BroadcastQueue(max_len=20)
    for u in us:
        q.push(u)
    distinct = len({u.node for u in us})
    assert len(q) == min(20, distinct)
    assert (q.drops > 0) == (distinct > 20)
    sent: dict[fr.Update, int] = {}
    rounds = 0
    while len(q):
        batch = q.take(budget, limit)
        assert batch, "an update that fits the budget was not sent"
        assert sum(fr.encoded_update_size(u) for u in batch) <= budget
        assert len({u.node for u in batch}) == len(batch)
        for u in batch:
            sent[u] = sent.get(u, 0) + 1
        rounds += 1
    assert all(n == limit for n in sent.values())
    assert len(sent) == min(20, distinct)


@given(st.integers(1, 200), st.integers(1, 8), st.integers(1, 8), st.integers(0, 10))
def test_suspicion_timeout_between_bounds_and_non_increasing(n: int, mult: int, max_mult: int,
                                                             confirmations: int) -> None:
    low, high = suspicion_bounds(mult, max_mult, n, 1.0)
    s = Suspicion("x", 0, 0.0, low, high, k=max(0, mult - 2), confirmers={"first"})
    prev = s.timeout()
    assert low <= prev <= high
    for i in range(confirmations):
        s.confirm(f"c{i}")
        cur = s.timeout()
        assert low <= cur <= prev
        prev = cur
