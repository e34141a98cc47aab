"""The cluster layout: merge laws, versions, placement movement, and a stateful
model of several nodes changing and gossiping their layouts (RFC 0011 §2, §4)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rimio.core.layout import (
    Holding,
    Layout,
    LayoutError,
    LayoutMismatch,
    Member,
    Role,
    bits_to_slots,
    merge,
    merge_all,
    slots_to_bits,
)

SLOTS = 64
NODES = [f"n{i}" for i in range(6)]


def founding(n: int = 4, slots: int = SLOTS, replicas: int = 3,
             w: int | None = None) -> Layout:
    return Layout.founding({f"n{i}": f"10.0.0.{i}:1" for i in range(n)}, total_slots=slots,
                           replicas=replicas, write_quorum=w)


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    """Any layout of one cluster shape (not only reachable ones): the merge
    laws hold for all of them."""
    ids = draw(st.lists(st.sampled_from(NODES), unique=True, max_size=len(NODES)))
    members = {n: Member(draw(st.sampled_from(["a:1", "b:1"])),
                         draw(st.sampled_from(list(Role)))) for n in ids}
    holders = draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    holdings = {n: Holding(draw(st.integers(0, 3)),
                           frozenset(draw(st.lists(st.integers(0, SLOTS - 1), max_size=6))))
                for n in holders}
    return Layout(SLOTS, 3, None, members, holdings)


@given(layouts(), layouts())
def test_merge_is_commutative(a: Layout, b: Layout) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(a, b).digest == merge(b, a).digest


@given(layouts(), layouts(), layouts())
def test_merge_is_associative(a: Layout, b: Layout, c: Layout) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(layouts(), layouts())
def test_merge_is_idempotent_and_never_lowers_the_version(a: Layout, b: Layout) -> None:
    assert merge(a, a) == a
    m = merge(a, b)
    assert merge(m, a) == m and merge(m, b) == m
    assert m.version >= max(a.version, b.version)
    if m != a:
        assert m.version > a.version or m.digest != a.digest


def test_merge_refuses_another_clusters_layout() -> None:
    with pytest.raises(LayoutMismatch):
        merge(founding(slots=64), founding(slots=128))
    with pytest.raises(LayoutMismatch):
        merge(founding(w=1), founding(w=2))


def test_founding_holds_exactly_its_targets() -> None:
    layout = founding()
    assert layout == founding()  # every founder computes the same one
    assert layout.moving_slots() == 0
    for slot in range(SLOTS):
        assert set(layout.targets(slot)) == set(layout.holders(slot))
        assert len(layout.targets(slot)) == 3
        plan = layout.plan(slot)
        assert plan.write_quorum == 2 and not plan.moving
        assert plan.layout_version == layout.version
    assert all(h.seq == 1 for h in layout.holdings.values())


def test_w_is_capped_by_the_effective_r() -> None:
    two = Layout.founding({"a": "a:1", "b": "b:1"}, total_slots=8, replicas=3, write_quorum=3)
    assert two.effective_replicas == 2 and two.quorum == 2
    assert founding(replicas=3).quorum == 2
    assert founding(replicas=5, n=5, w=None).quorum == 3


_OPS = st.lists(st.tuples(st.sampled_from(["join", "decommission", "remove", "confirm",
                                           "drop", "promote"]),
                          st.sampled_from([*NODES, "n6", "n7"]), st.integers(0, SLOTS - 1)),
                max_size=30)


def _apply(layout: Layout, op: str, node: str, slot: int) -> Layout:
    if op == "join":
        return layout.join(node, f"{node}:1")
    if op == "decommission":
        return layout.decommission(node)
    if op == "remove":
        return layout.remove(node)
    if op == "confirm":
        todo = sorted(layout.slots_to_copy(node))
        return layout.confirm(node, todo[slot % len(todo)] if todo else slot)
    if op == "drop":
        ready = sorted(layout.slots_to_drop(node))
        return layout.drop(node, ready[slot % len(ready)] if ready else slot)
    return layout.promote(node)


@given(_OPS)
def test_every_transition_raises_the_version(ops: list[tuple[str, str, int]]) -> None:
    layout = founding()
    for op, node, slot in ops:
        try:
            after = _apply(layout, op, node, slot)
        except LayoutError:
            continue
        assert after.version > layout.version
        assert merge(layout, after) == after  # a transition only adds information
        layout = after


@given(_OPS, _OPS)
def test_diverged_histories_converge(left: list[tuple[str, str, int]],
                                     right: list[tuple[str, str, int]]) -> None:
    a = b = founding()
    for ops, side in ((left, "a"), (right, "b")):
        cur = a if side == "a" else b
        for op, node, slot in ops:
            try:
                cur = _apply(cur, op, node, slot)
            except LayoutError:
                continue
        if side == "a":
            a = cur
        else:
            b = cur
    m = merge(a, b)
    assert m == merge(b, a)
    assert merge(m, a) == m and merge(m, b) == m


def test_concurrent_joins_through_different_nodes_converge() -> None:
    base = founding()
    via_1 = base.join("n6", "10.0.0.6:1")
    via_2 = base.join("n7", "10.0.0.7:1")
    a, b = merge(via_1, via_2), merge(via_2, via_1)
    assert a == b and a.role("n6") is Role.JOINING and a.role("n7") is Role.JOINING
    assert a.version == base.version + 2
    # the same node joined through two nodes at once is one member
    assert merge(base.join("n6", "10.0.0.6:1"), via_1) == via_1


def _replica_changes(before: Layout, after: Layout) -> tuple[int, set[str]]:
    changed, added_to = 0, set()
    for slot in range(before.total_slots):
        old, new = set(before.targets(slot)), set(after.targets(slot))
        changed += len(new - old)
        added_to |= new - old
    return changed, added_to


def test_a_fifth_node_takes_about_a_fifth_of_the_replicas_and_only_it() -> None:
    before = founding(n=4, slots=2048)
    after = before.join("n4", "10.0.0.4:1")
    changed, added_to = _replica_changes(before, after)
    total = 2048 * 3
    assert added_to == {"n4"}
    assert 0.15 * total <= changed <= 0.25 * total, changed
    assert after.slots_to_copy("n4") == frozenset(
        s for s in range(2048) if "n4" in after.targets(s))


def test_decommission_moves_only_that_nodes_replicas() -> None:
    before = founding(n=5, slots=2048)
    after = before.decommission("n2")
    for slot in range(2048):
        old, new = set(before.targets(slot)), set(after.targets(slot))
        if "n2" in old:
            assert len(old - new) == 1 and old - new == {"n2"}
        else:
            assert old == new
    assert after.slots_to_drop("n2") == frozenset()  # nobody copied yet
    assert after.moving_slots() == len(before.held_by("n2"))


def test_a_join_then_moves_and_promotes() -> None:
    layout = founding(n=3, slots=128).join("n3", "10.0.0.3:1")
    todo = layout.slots_to_copy("n3")
    with pytest.raises(LayoutError):
        layout.promote("n3")
    layout = layout.confirm("n3", *sorted(todo))
    layout = layout.promote("n3")
    assert layout.role("n3") is Role.ACTIVE
    for node in ("n0", "n1", "n2"):
        ready = layout.slots_to_drop(node)
        assert ready == layout.held_by(node) - {s for s in range(128)
                                                if node in layout.targets(s)}
        if ready:
            layout = layout.drop(node, *sorted(ready))
    assert layout.moving_slots() == 0


def test_drain_to_removed() -> None:
    layout = founding(n=4, slots=64).decommission("n1")
    with pytest.raises(LayoutError):
        layout.promote("n1")  # still holds slots
    for node in ("n0", "n2", "n3"):
        todo = layout.slots_to_copy(node)
        if todo:
            layout = layout.confirm(node, *sorted(todo))
    layout = layout.drop("n1", *sorted(layout.slots_to_drop("n1")))
    assert layout.held_by("n1") == frozenset()
    layout = layout.promote("n1")
    assert layout.role("n1") is Role.REMOVED and layout.moving_slots() == 0


def test_forbidden_transitions_change_nothing() -> None:
    layout = founding(n=2, slots=16, replicas=1)
    holder = layout.targets(0)[0]
    other = "n0" if holder == "n1" else "n1"
    with pytest.raises(LayoutError):
        layout.join("n0", "x:1")
    with pytest.raises(LayoutError):
        layout.drop(holder, 0)  # still its target
    with pytest.raises(LayoutError):
        layout.confirm(other, 0)  # not a target
    with pytest.raises(LayoutError):
        layout.decommission("nope")
    drained = layout.decommission("n0")
    with pytest.raises(LayoutError):
        drained.decommission("n1")  # the last node that can hold data
    with pytest.raises(LayoutError):
        drained.remove("n1")
    with pytest.raises(LayoutError):
        layout.promote("n0")  # active: nothing to promote


def test_removed_nodes_hold_nothing_that_counts() -> None:
    layout = founding(n=4, slots=32)
    removed = layout.remove("n3")
    assert all("n3" not in removed.holders(s) and "n3" not in removed.targets(s)
               for s in range(32))
    assert removed.held_by("n3") == layout.held_by("n3")


# --------------------------------------------------------------------------
# Several nodes, each with its own copy of the layout, changing and gossiping


class LayoutGossip(RuleBasedStateMachine):
    """Each node changes only its own holdings, on its own layout copy, and
    only after it holds the data (`disks`); roles change through any node.
    A drop follows the mover's rule (RFC 0011 §4): exchange layouts with the
    slot's targets, check again, then drop. No slot's data may ever vanish
    from every disk, whatever the interleaving."""

    def __init__(self) -> None:
        super().__init__()
        start = founding(n=3, slots=16, replicas=2)
        self.views: dict[str, Layout] = {n: start for n in start.members}
        self.disks: dict[str, set[int]] = {n: set(start.held_by(n)) for n in start.members}
        self.versions: dict[str, int] = {n: start.version for n in start.members}
        self.candidates = ["n3", "n4", "n5"]

    def _set(self, node: str, layout: Layout) -> None:
        assert layout.version >= self.versions[node]
        self.views[node] = layout
        self.versions[node] = layout.version

    def _exchange(self, a: str, b: str) -> None:
        m = merge(self.views[a], self.views[b])
        self._set(a, m)
        self._set(b, m)

    @rule(via=st.integers(0, 10), data=st.data())
    def join(self, via: int, data: st.DataObject) -> None:
        if not self.candidates:
            return
        node = data.draw(st.sampled_from(self.candidates))
        through = sorted(self.views)[via % len(self.views)]
        view = self.views[through]
        if node in view.members:
            return
        self.candidates.remove(node)
        self._set(through, view.join(node, f"{node}:1"))
        self.views[node] = self.views[through]
        self.versions[node] = self.views[node].version
        self.disks[node] = set()

    @rule(who=st.integers(0, 10), via=st.integers(0, 10))
    def decommission(self, who: int, via: int) -> None:
        through = sorted(self.views)[via % len(self.views)]
        view = self.views[through]
        node = sorted(view.members)[who % len(view.members)]
        with contextlib.suppress(LayoutError):
            self._set(through, view.decommission(node))

    @rule(a=st.integers(0, 10), b=st.integers(0, 10))
    def gossip(self, a: int, b: int) -> None:
        names = sorted(self.views)
        self._exchange(names[a % len(names)], names[b % len(names)])

    @rule(who=st.integers(0, 10), pick=st.integers(0, 100))
    def copy_in(self, who: int, pick: int) -> None:
        node = sorted(self.views)[who % len(self.views)]
        view = self.views[node]
        todo = sorted(view.slots_to_copy(node))
        if not todo:
            return
        slot = todo[pick % len(todo)]
        sources = [h for h in view.holders(slot) if slot in self.disks[h]]
        if not sources:
            return  # in real life: the copy finds no holder with the data; retried later
        self.disks[node].add(slot)
        self._set(node, view.confirm(node, slot))

    @rule(who=st.integers(0, 10), pick=st.integers(0, 100))
    def drop(self, who: int, pick: int) -> None:
        node = sorted(self.views)[who % len(self.views)]
        ready = sorted(self.views[node].slots_to_drop(node))
        if not ready:
            return
        slot = ready[pick % len(ready)]
        for target in self.views[node].targets(slot):
            self._exchange(node, target)
        view = self.views[node]
        if slot not in view.slots_to_drop(node):
            return
        self._set(node, view.drop(node, slot))
        self.disks[node].discard(slot)

    @rule(who=st.integers(0, 10))
    def promote(self, who: int) -> None:
        node = sorted(self.views)[who % len(self.views)]
        with contextlib.suppress(LayoutError):
            self._set(node, self.views[node].promote(node))

    @invariant()
    def no_slot_is_lost(self) -> None:
        on_disk = set().union(*self.disks.values())
        assert on_disk == set(range(16))

    @invariant()
    def own_holdings_are_what_the_disk_has(self) -> None:
        for node, view in self.views.items():
            assert view.held_by(node) == frozenset(self.disks[node])

    @invariant()
    def the_merge_of_all_views_agrees_with_the_disks(self) -> None:
        everything = merge_all(self.views.values())
        for slot in range(16):
            assert everything.holders(slot), slot
        for node in self.views:
            assert everything.held_by(node) == frozenset(self.disks[node])


LayoutGossip.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                          deadline=None)
test_layout_gossip = LayoutGossip.TestCase


@given(st.integers(0, 2047), st.integers(0, 2047))
def test_plan_matches_its_sets(slot: int, other: int) -> None:
    layout = founding(n=5, slots=2048).join("n9", "x:1")
    assume(slot != other)
    plan = layout.plan(slot)
    assert plan.targets == layout.targets(slot)
    assert set(plan.holders) == set(layout.holders(slot))
    assert plan.moving == layout.moving(slot)


# -- the fast paths: bitmaps, holding order, derived layouts -------------------


@given(st.frozensets(st.integers(0, 5000)))
def test_slot_bits_round_trip(slots: frozenset[int]) -> None:
    bits = slots_to_bits(slots)
    assert bits == sum(1 << s for s in slots)
    assert bits_to_slots(bits) == slots
    held = Holding.from_bits(3, bits)
    assert held == Holding(3, slots) and held.bits == Holding(3, slots).bits == bits


def test_a_negative_slot_has_no_bit() -> None:
    with pytest.raises(ValueError):
        slots_to_bits(frozenset({-1, 3}))


_HOLDINGS = st.builds(Holding, st.integers(0, 3), st.frozensets(st.integers(0, 9), max_size=4))


@given(_HOLDINGS, _HOLDINGS)
def test_beats_is_the_order_of_the_keys(a: Holding, b: Holding) -> None:
    assert a.beats(b) == (a.key() > b.key())


@pytest.mark.parametrize("slots", [{-1}, {0, SLOTS}, {SLOTS + 7}])
def test_the_constructor_refuses_slots_out_of_range(slots: set[int]) -> None:
    members = {"n0": Member("a:1", Role.ACTIVE)}
    with pytest.raises(ValueError):
        Layout(SLOTS, 3, None, members, {"n0": Holding(1, frozenset(slots))})
    if min(slots) >= 0:  # the same through a bitmap
        with pytest.raises(ValueError):
            Layout(SLOTS, 3, None, members, {"n0": Holding.from_bits(1, slots_to_bits(slots))})


def _same_as_checked(layout: Layout) -> None:
    """A layout derived without the constructor's check is the one the
    checked constructor builds from its parts, caches included."""
    rebuilt = Layout(layout.total_slots, layout.replicas, layout.write_quorum,
                     layout.members, layout.holdings)
    assert rebuilt == layout
    assert rebuilt.version == layout.version and rebuilt.digest == layout.digest
    assert rebuilt.moving_slots() == layout.moving_slots()
    for slot in range(layout.total_slots):
        assert rebuilt.targets(slot) == layout.targets(slot)
        assert rebuilt.holders(slot) == layout.holders(slot)


@given(_OPS, _OPS)
def test_derived_layouts_equal_checked_ones(left: list[tuple[str, str, int]],
                                            right: list[tuple[str, str, int]]) -> None:
    a = b = founding()
    for ops, side in ((left, "a"), (right, "b")):
        cur = a if side == "a" else b
        for op, node, slot in ops:
            with contextlib.suppress(LayoutError):
                cur = _apply(cur, op, node, slot)
                _same_as_checked(cur)
        if side == "a":
            a = cur
        else:
            b = cur
    _same_as_checked(merge(a, b))


@given(layouts(), layouts())
def test_merge_hands_back_an_input_that_holds_everything(a: Layout, b: Layout) -> None:
    m = merge(a, b)
    if m == a:
        assert m is a
    elif m == b:
        assert m is b
    _same_as_checked(m)


def test_holders_of_a_slot_out_of_range() -> None:
    with pytest.raises(IndexError):
        founding().holders(SLOTS)
    with pytest.raises(IndexError):
        founding().holders(-1)
