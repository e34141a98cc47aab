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
layout: a request computes its plan in O(1) once the slot was seen; the
targets are shared by every layout with the same targetable members, so a
transition that only changes holdings ranks nothing again.

Layouts are built from untrusted parts (a decoded frame, a test) through
the constructor, which checks every holding; a transition or a merge derives
its result from layouts already checked and skips that (at 2048 slots the
check of every holding was most of a transition's cost). A holding's slots
are also kept as an int bitmap, made once per holding: the wire frame and
the digest read it instead of the set.

Transitions (`join`, `decommission`, `remove`, `confirm`, `drop`,
`promote`) return new layouts whose `version` is strictly higher; a
transition that is not allowed raises `LayoutError` and changes nothing.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
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


# bytes 0/1 <-> ASCII "0"/"1": C-speed conversions between a slot set and its bitmap
_TO_DIGITS = bytes.maketrans(b"\x00\x01", b"01")
_FROM_DIGITS = bytes.maketrans(b"01", b"\x00\x01")


def slots_to_bits(slots: Collection[int]) -> int:
    """The int with bit `s` set for each slot `s` (ValueError for a negative one)."""
    if not slots:
        return 0
    if min(slots) < 0:
        raise ValueError("a slot must not be negative")
    flags = bytearray(max(slots) + 1)
    for s in slots:
        flags[s] = 1
    flags.reverse()
    return int(flags.translate(_TO_DIGITS), 2)


def bits_to_slots(bits: int) -> frozenset[int]:
    """The slots whose bits are set in `bits` (non-negative)."""
    if not bits:
        return frozenset()
    flags = bin(bits)[:1:-1].encode("ascii").translate(_FROM_DIGITS)
    return frozenset(compress(range(len(flags)), flags))


@dataclass(frozen=True, slots=True)
class Holding:
    """The slots a node holds a complete copy of, as of its `seq`-th change."""

    seq: int
    slots: frozenset[int]
    # `slots` as a bitmap, made on first use (never compared: it follows from slots)
    _bits: int | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_bits(cls, seq: int, bits: int) -> Holding:
        """The holding whose slots are the set bits of `bits` (non-negative)."""
        holding = cls(seq, bits_to_slots(bits))
        object.__setattr__(holding, "_bits", bits)
        return holding

    @property
    def bits(self) -> int:
        """The slots as an int: bit `s` set for slot `s` (the wire bitmap, little-endian)."""
        if self._bits is None:
            object.__setattr__(self, "_bits", slots_to_bits(self.slots))
        assert self._bits is not None
        return self._bits

    def key(self) -> tuple[int, int, tuple[int, ...]]:
        # At equal seq (which only a node that lost its own layout produces)
        # the fuller, then the lexically larger set wins: any total order
        # keeps merge a semilattice.
        return self.seq, len(self.slots), tuple(sorted(self.slots))

    def beats(self, other: Holding) -> bool:
        """`self.key() > other.key()`, without sorting the sets unless seq and size tie."""
        if self.seq != other.seq:
            return self.seq > other.seq
        if len(self.slots) != len(other.slots):
            return len(self.slots) > len(other.slots)
        return self.slots != other.slots and self.key() > other.key()


def _check_holding(node: str, holding: Holding, members: Mapping[str, Member],
                   total_slots: int) -> None:
    if node not in members:
        raise ValueError(f"holdings of {node!r}, which is not a member")
    if holding.seq < 0:
        raise ValueError("a holding's seq must not be negative")
    slots = holding.slots
    if holding._bits is not None:  # made from a bitmap: no negative slot
        out_of_range = holding._bits >> total_slots != 0
    else:
        out_of_range = bool(slots) and (min(slots) < 0 or max(slots) >= total_slots)
    if out_of_range:
        raise ValueError(f"holdings of {node!r} name a slot out of range")


# Targets depend only on the targetable members and the effective R: layouts
# that share them (every holdings-only transition) share one cache of them.
_TARGET_CACHES: OrderedDict[tuple[tuple[str, ...], int], dict[int, tuple[str, ...]]] = (
    OrderedDict())
_TARGET_CACHES_KEPT = 16
# layouts are also built in worker threads (a node loading its file)
_TARGET_CACHES_LOCK = threading.Lock()


def _target_cache(targetable: tuple[str, ...], replicas: int) -> dict[int, tuple[str, ...]]:
    key = (targetable, replicas)
    with _TARGET_CACHES_LOCK:
        found = _TARGET_CACHES.get(key)
        if found is None:
            found = _TARGET_CACHES[key] = {}
            while len(_TARGET_CACHES) > _TARGET_CACHES_KEPT:
                _TARGET_CACHES.popitem(last=False)
        else:
            _TARGET_CACHES.move_to_end(key)
        return found


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
    _held: tuple[tuple[str, frozenset[int]], ...] = field(init=False, repr=False,
                                                           compare=False)
    _holders: dict[int, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _version: int = field(init=False, repr=False, compare=False)
    _digest: list[str] = field(init=False, repr=False, compare=False)
    _moving: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.total_slots < 1:
            raise ValueError("total_slots must be at least 1")
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.write_quorum is not None and not 1 <= self.write_quorum <= self.replicas:
            raise ValueError("write_quorum must lie in 1..replicas")
        for node, holding in self.holdings.items():
            _check_holding(node, holding, self.members, self.total_slots)
        self._derive_caches(dict(self.members), dict(self.holdings))

    def _derive_caches(self, members: dict[str, Member], holdings: dict[str, Holding]) -> None:
        """Set the maps (owned by this layout) and the derived, cached fields."""
        setter = object.__setattr__
        setter(self, "members", members)
        setter(self, "holdings", holdings)
        targetable = tuple(sorted(n for n, m in members.items() if m.role.targetable))
        setter(self, "_targetable", targetable)
        setter(self, "_targets", _target_cache(targetable, min(self.replicas, len(targetable))))
        setter(self, "_held", tuple(
            (n, holdings[n].slots) for n in sorted(holdings)
            if members[n].role is not Role.REMOVED))
        setter(self, "_holders", {})
        setter(self, "_version", sum(m.role.rank + 1 for m in members.values())
               + sum(h.seq for h in holdings.values()))
        setter(self, "_digest", [])
        setter(self, "_moving", [])

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

    def _with(self, members: dict[str, Member] | None = None,
              holdings: dict[str, Holding] | None = None) -> Layout:
        """This layout with `members` and/or `holdings` replaced, unchecked:
        only for maps made from checked layouts of this cluster (a transition
        that checked its own change, a merge), which the new layout owns."""
        derived: Layout = object.__new__(Layout)
        setter = object.__setattr__
        setter(derived, "total_slots", self.total_slots)
        setter(derived, "replicas", self.replicas)
        setter(derived, "write_quorum", self.write_quorum)
        derived._derive_caches(dict(self.members) if members is None else members,
                               dict(self.holdings) if holdings is None else holdings)
        return derived

    # -- identity -------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Σ(rank(role) + 1) over members + Σ(seq) over holdings: rises with every
        transition, never falls under merge; equal layouts have equal versions."""
        return self._version

    def canonical(self) -> list[Any]:
        """A canonical, msgpack-able form (what `digest` hashes): each holding
        as its bitmap, the bytes the layout frame carries."""
        width = (self.total_slots + 7) // 8
        return [
            self.total_slots, self.replicas, self.write_quorum,
            [[n, m.address, m.role.value] for n, m in sorted(self.members.items())],
            [[n, h.seq, h.bits.to_bytes(width, "little")]
             for n, h in sorted(self.holdings.items())],
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

    def holders(self, slot: int) -> tuple[str, ...]:
        """The non-removed members that hold a complete copy of `slot`, by node id."""
        found = self._holders.get(slot)
        if found is None:
            if not 0 <= slot < self.total_slots:
                raise IndexError(f"slot {slot} out of range")
            found = tuple(n for n, slots in self._held if slot in slots)
            self._holders[slot] = found
        return found

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
        if not self._moving:
            self._moving.append(sum(1 for s in range(self.total_slots) if self.moving(s)))
        return self._moving[0]

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
        # the caller checked that `slots` lie in range and that node_id is a member
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
    if a is b:
        return a
    members, members_beyond_a, members_beyond_b = _merge_maps(
        a.members, b.members, lambda mine, theirs: theirs.key() > mine.key())
    holdings, holdings_beyond_a, holdings_beyond_b = _merge_maps(
        a.holdings, b.holdings, lambda mine, theirs: theirs.beats(mine))
    # Hand back an input when nothing changed, so callers can compare cheaply.
    if not (members_beyond_a or holdings_beyond_a):
        return a
    if not (members_beyond_b or holdings_beyond_b):
        return b
    # Both inputs were checked and are of one cluster: the union needs no check.
    return a._with(members=members, holdings=holdings)


def _merge_maps(a: Mapping[str, Any], b: Mapping[str, Any],
                wins: Callable[[Any, Any], bool]) -> tuple[dict[str, Any], bool, bool]:
    """The entry-wise join of `a` and `b` (`wins(mine, theirs)`: b's entry is
    the greater), and whether it differs from `a`, and from `b`."""
    out = dict(a)
    beyond_a = beyond_b = False
    shared = 0  # keys of b that a has too
    for node, theirs in b.items():
        mine = out.get(node)
        if mine is None:
            out[node] = theirs
            beyond_a = True
            continue
        shared += 1
        if mine is theirs or mine == theirs:
            continue
        if wins(mine, theirs):
            out[node] = theirs
            beyond_a = True
        else:
            beyond_b = True
    beyond_b = beyond_b or shared < len(a)  # a has a key b lacks
    return out, beyond_a, beyond_b


def merge_all(layouts: Iterable[Layout]) -> Layout:
    it = iter(layouts)
    out = next(it)
    for layout in it:
        out = merge(out, layout)
    return out
