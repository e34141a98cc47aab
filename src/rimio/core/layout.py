"""The cluster layout: which nodes hold data, and which slots each one holds (RFC 0011 §2).

A `Layout` is cluster state shared by gossip. It is a join-semilattice:
`merge(a, b)` contains both, whatever order changes arrive in, so layouts
that exchanged converge without any coordination. It holds

* `members`: node id → `Member(address, role)`; a role only moves up the
  order joining < active < draining < removed, and merge keeps the higher
  (at equal role, the larger address, so merge is deterministic);
* `holdings`: node id → `Holding(seq, slots)`, the slots the node holds a
  complete copy of; only the node itself changes its entry, raising `seq`,
  and merge keeps the higher `seq`;
* `total_slots`, `replicas` (R as configured) and `write_quorum` (W as
  configured, or None for a majority of the effective R), fixed at creation.

From these, per slot: `targets` (rendezvous top-R over the joining and
active members), `holders` (non-removed members holding it) and the
`SlotPlan` the coordinator uses. Both are cached inside the (immutable)
layout: a request computes its plan in O(1) once the slot was seen.

Transitions (`join`, `decommission`, `remove`, `confirm`, `drop`,
`promote`) return new layouts whose `version` is strictly higher; a
transition that is not allowed raises `LayoutError` and changes nothing.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from rimio.core.placement import replicas_for_slot
from rimio.core.quorum import SlotPlan


class LayoutError(Exception):
    """A transition that the layout does not allow (now)."""


class LayoutMismatch(LayoutError):
    """Two layouts of different clusters (total_slots, R or W differ): never merged."""


class Role(enum.StrEnum):
    """A member's role; it only moves up this order."""

    JOINING = "joining"
    ACTIVE = "active"
    DRAINING = "draining"
    REMOVED = "removed"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @property
    def targetable(self) -> bool:
        """Whether the member is given slots (a draining node's move away)."""
        return self is Role.JOINING or self is Role.ACTIVE


_RANKS = {role: i for i, role in enumerate(Role)}


@dataclass(frozen=True, slots=True)
class Member:
    address: str
    role: Role

    def key(self) -> tuple[int, str]:
        return self.role.rank, self.address


@dataclass(frozen=True, slots=True)
class Holding:
    """The slots a node holds a complete copy of, as of its `seq`-th change."""

    seq: int
    slots: frozenset[int]

    def key(self) -> tuple[int, int, tuple[int, ...]]:
        # At equal seq (which only a node that lost its own layout produces)
        # the fuller, then the lexically larger set wins: any total order
        # keeps merge a semilattice.
        return self.seq, len(self.slots), tuple(sorted(self.slots))


def _majority(effective_r: int) -> int:
    return effective_r // 2 + 1


@dataclass(frozen=True, slots=True)
class Layout:
    total_slots: int
    replicas: int
    write_quorum: int | None
    members: Mapping[str, Member]
    holdings: Mapping[str, Holding] = field(default_factory=dict)
    # Derived, cached; never compared.
    _targetable: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _targets: dict[int, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _holders: list[tuple[str, ...]] | None = field(init=False, repr=False, compare=False)
    _version: int = field(init=False, repr=False, compare=False)
    _digest: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.total_slots < 1:
            raise ValueError("total_slots must be at least 1")
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.write_quorum is not None and not 1 <= self.write_quorum <= self.replicas:
            raise ValueError("write_quorum must lie in 1..replicas")
        for node, holding in self.holdings.items():
            if node not in self.members:
                raise ValueError(f"holdings of {node!r}, which is not a member")
            if holding.seq < 0:
                raise ValueError("a holding's seq must not be negative")
            if any(not 0 <= s < self.total_slots for s in holding.slots):
                raise ValueError(f"holdings of {node!r} name a slot out of range")
        setter = object.__setattr__
        setter(self, "members", dict(self.members))
        setter(self, "holdings", dict(self.holdings))
        setter(self, "_targetable", tuple(sorted(
            n for n, m in self.members.items() if m.role.targetable)))
        setter(self, "_targets", {})
        setter(self, "_holders", None)
        setter(self, "_version", sum(m.role.rank + 1 for m in self.members.values())
               + sum(h.seq for h in self.holdings.values()))
        setter(self, "_digest", [])

    # -- construction -------------------------------------------------------------

    @classmethod
    def empty(cls, *, total_slots: int, replicas: int, write_quorum: int | None) -> Layout:
        """No members yet: what a joining node starts from before it merges its seed's."""
        return cls(total_slots, replicas, write_quorum, {}, {})

    @classmethod
    def founding(cls, nodes: Mapping[str, str], *, total_slots: int, replicas: int,
                 write_quorum: int | None) -> Layout:
        """The layout every founder computes alone from `initial_cluster`
        (`nodes`: node id → address): all active, each holding exactly its
        target slots, at seq 1."""
        members = {n: Member(a, Role.ACTIVE) for n, a in nodes.items()}
        base = cls(total_slots, replicas, write_quorum, members, {})
        held: dict[str, set[int]] = {n: set() for n in nodes}
        for slot in range(total_slots):
            for node in base.targets(slot):
                held[node].add(slot)
        return cls(total_slots, replicas, write_quorum, members,
                   {n: Holding(1, frozenset(s)) for n, s in held.items()})

    def _with(self, members: Mapping[str, Member] | None = None,
              holdings: Mapping[str, Holding] | None = None) -> Layout:
        return Layout(self.total_slots, self.replicas, self.write_quorum,
                      self.members if members is None else members,
                      self.holdings if holdings is None else holdings)

    # -- identity -------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Σ(rank(role) + 1) over members + Σ(seq) over holdings: rises with every
        transition, never falls under merge; equal layouts have equal versions."""
        return self._version

    def canonical(self) -> list[Any]:
        """A canonical, msgpack-able form (what `digest` hashes)."""
        return [
            self.total_slots, self.replicas, self.write_quorum,
            [[n, m.address, m.role.value] for n, m in sorted(self.members.items())],
            [[n, h.seq, sorted(h.slots)] for n, h in sorted(self.holdings.items())],
        ]

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical form: two nodes whose digests differ exchange."""
        if not self._digest:
            packed = msgpack.packb(self.canonical(), use_bin_type=True)
            self._digest.append(hashlib.sha256(packed).hexdigest())
        return self._digest[0]

    def same_cluster(self, other: Layout) -> bool:
        return (self.total_slots, self.replicas, self.write_quorum) == (
            other.total_slots, other.replicas, other.write_quorum)

    # -- derived sets -------------------------------------------------------------

    def role(self, node_id: str) -> Role | None:
        member = self.members.get(node_id)
        return None if member is None else member.role

    def address(self, node_id: str) -> str | None:
        member = self.members.get(node_id)
        return None if member is None else member.address

    @property
    def effective_replicas(self) -> int:
        """R capped at the number of nodes that can be given slots."""
        return min(self.replicas, len(self._targetable))

    @property
    def quorum(self) -> int:
        """W: as configured or a majority of the effective R, capped by it (≥ 1)."""
        effective = self.effective_replicas
        wanted = self.write_quorum if self.write_quorum is not None else _majority(effective)
        return max(1, min(wanted, effective))

    def targets(self, slot: int) -> tuple[str, ...]:
        """The nodes the layout wants to hold `slot`, rendezvous order, best first."""
        found = self._targets.get(slot)
        if found is None:
            found = tuple(replicas_for_slot(slot, self._targetable, self.effective_replicas))
            self._targets[slot] = found
        return found

    def _holder_index(self) -> list[tuple[str, ...]]:
        if self._holders is None:
            index: list[list[str]] = [[] for _ in range(self.total_slots)]
            for node, holding in sorted(self.holdings.items()):
                member = self.members[node]
                if member.role is Role.REMOVED:
                    continue
                for slot in holding.slots:
                    index[slot].append(node)
            object.__setattr__(self, "_holders", [tuple(h) for h in index])
        assert self._holders is not None
        return self._holders

    def holders(self, slot: int) -> tuple[str, ...]:
        """The non-removed members that hold a complete copy of `slot`, by node id."""
        return self._holder_index()[slot]

    def held_by(self, node_id: str) -> frozenset[int]:
        holding = self.holdings.get(node_id)
        return frozenset() if holding is None else holding.slots

    def plan(self, slot: int) -> SlotPlan:
        return SlotPlan(slot=slot, targets=self.targets(slot), holders=self.holders(slot),
                        write_quorum=self.quorum, layout_version=self.version)

    def moving(self, slot: int) -> bool:
        return set(self.targets(slot)) != set(self.holders(slot))

    def moving_slots(self) -> int:
        """How many slots do not sit where the layout wants them (0: at rest)."""
        return sum(1 for s in range(self.total_slots) if self.moving(s))

    def slots_to_copy(self, node_id: str) -> frozenset[int]:
        """Slots `node_id` is a target of but does not hold yet (the mover copies them in)."""
        held = self.held_by(node_id)
        return frozenset(s for s in range(self.total_slots)
                         if s not in held and node_id in self.targets(s))

    def slots_to_drop(self, node_id: str) -> frozenset[int]:
        """Slots `node_id` holds, is no target of, and every target already holds."""
        return frozenset(s for s in self.held_by(node_id) if self._droppable(node_id, s))

    def _droppable(self, node_id: str, slot: int) -> bool:
        targets = self.targets(slot)
        # No targets at all (every member draining): nobody could take the
        # data, so nobody lets it go.
        return (bool(targets) and node_id not in targets
                and set(targets) <= set(self.holders(slot)))

    # -- transitions ----------------------------------------------------------------

    def join(self, node_id: str, address: str) -> Layout:
        """`node_id` at `address` becomes a member, `joining`: a target at once."""
        if node_id in self.members:
            raise LayoutError(f"{node_id} is already a member "
                              f"({self.members[node_id].role.value})")
        return self._with(members={**self.members, node_id: Member(address, Role.JOINING)})

    def _set_role(self, node_id: str, role: Role) -> Layout:
        member = self.members[node_id]
        return self._with(members={**self.members, node_id: Member(member.address, role)})

    def _require(self, node_id: str) -> Member:
        member = self.members.get(node_id)
        if member is None:
            raise LayoutError(f"{node_id} is not a member of the layout")
        return member

    def _check_keeps_a_target(self, node_id: str) -> None:
        if self._targetable == (node_id,):
            raise LayoutError(f"{node_id} is the last node that can hold data")

    def decommission(self, node_id: str) -> Layout:
        """`node_id` drains: it is no one's target any more, its slots move away."""
        member = self._require(node_id)
        if not member.role.targetable:
            raise LayoutError(f"{node_id} is already {member.role.value}")
        self._check_keeps_a_target(node_id)
        return self._set_role(node_id, Role.DRAINING)

    def remove(self, node_id: str) -> Layout:
        """An operator's removal of a (dead) node: its copies no longer count."""
        member = self._require(node_id)
        if member.role is Role.REMOVED:
            raise LayoutError(f"{node_id} is already removed")
        self._check_keeps_a_target(node_id)
        return self._set_role(node_id, Role.REMOVED)

    def _hold(self, node_id: str, slots: frozenset[int]) -> Layout:
        seq = self.holdings[node_id].seq + 1 if node_id in self.holdings else 1
        return self._with(holdings={**self.holdings, node_id: Holding(seq, slots)})

    def confirm(self, node_id: str, *slots: int) -> Layout:
        """`node_id` now holds a complete copy of `slots` (it is a target of each)."""
        member = self._require(node_id)
        if member.role is Role.REMOVED:
            raise LayoutError(f"{node_id} is removed")
        held = self.held_by(node_id)
        if not slots:
            raise LayoutError("no slot to confirm")
        for slot in slots:
            if not 0 <= slot < self.total_slots:
                raise LayoutError(f"slot {slot} out of range")
            if slot in held:
                raise LayoutError(f"{node_id} already holds slot {slot}")
            if node_id not in self.targets(slot):
                raise LayoutError(f"{node_id} is not a target of slot {slot}")
        return self._hold(node_id, held | frozenset(slots))

    def drop(self, node_id: str, *slots: int) -> Layout:
        """`node_id` gives up `slots`: only once it is no target of them and every
        target holds them (RFC 0011 §4)."""
        self._require(node_id)
        held = self.held_by(node_id)
        if not slots:
            raise LayoutError("no slot to drop")
        for slot in slots:
            if slot not in held:
                raise LayoutError(f"{node_id} does not hold slot {slot}")
            if not self._droppable(node_id, slot):
                raise LayoutError(f"slot {slot} cannot be dropped by {node_id} yet: it is a "
                                  "target, or not every target holds the slot")
        return self._hold(node_id, held - frozenset(slots))

    def promote(self, node_id: str) -> Layout:
        """joining → active once it holds every slot it is a target of;
        draining → removed once it holds none."""
        member = self._require(node_id)
        if member.role is Role.JOINING:
            if self.slots_to_copy(node_id):
                raise LayoutError(f"{node_id} does not hold all its slots yet")
            return self._set_role(node_id, Role.ACTIVE)
        if member.role is Role.DRAINING:
            if self.held_by(node_id):
                raise LayoutError(f"{node_id} still holds {len(self.held_by(node_id))} slots")
            return self._set_role(node_id, Role.REMOVED)
        raise LayoutError(f"{node_id} is {member.role.value}: nothing to promote")


def merge(a: Layout, b: Layout) -> Layout:
    """The least layout that contains both (commutative, associative, idempotent).

    Raises `LayoutMismatch` for layouts of different clusters."""
    if not a.same_cluster(b):
        raise LayoutMismatch(
            f"layouts differ in shape: {a.total_slots} slots, R={a.replicas}, "
            f"W={a.write_quorum} against {b.total_slots} slots, R={b.replicas}, "
            f"W={b.write_quorum}")
    if a == b:
        return a
    members = _merge_maps(a.members, b.members, Member.key)
    holdings = _merge_maps(a.holdings, b.holdings, Holding.key)
    merged = a._with(members=members, holdings=holdings)
    # Hand back an input when nothing changed, so callers can compare cheaply.
    if merged == a:
        return a
    if merged == b:
        return b
    return merged


def _merge_maps(a: Mapping[str, Any], b: Mapping[str, Any], key: Any) -> dict[str, Any]:
    out = dict(a)
    for node, value in b.items():
        mine = out.get(node)
        if mine is None or key(value) > key(mine):
            out[node] = value
    return out


def merge_all(layouts: Iterable[Layout]) -> Layout:
    it = iter(layouts)
    out = next(it)
    for layout in it:
        out = merge(out, layout)
    return out
