"""Digests of a slot's heads, and how two replicas find what differs (RFC 0014).

A replica buckets the current heads of each slot it holds into `SLOTLETS`
slotlets by a byte of the path's SHA-256 that placement does not use (the
last one). A slotlet's digest is the XOR of the *tokens* of its heads (the
first 16 bytes of each head's SHA-256), so a write changes it in O(1): XOR
out the head it replaces, XOR in the new one. An empty slotlet's digest is
zero. The slot's digest is the XOR of all its tokens, kept the same way.
Slotlets are grouped `FANOUT` at a time; a group's digest hashes its
slotlets' digests.

Two replicas of a slot compare, level by level, only what differs: the slot
digests (one per shared slot), then the group digests of the slots that
differ, then the slotlet digests of the groups that differ, then the heads
(path and head order) of the slotlets that differ, and `reconcile` says, by
head order, which paths each side must take from the other. The bytes
exchanged grow with the difference, not with the data.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SLOTLETS = 256
FANOUT = 16
GROUPS = SLOTLETS // FANOUT
TOKEN_BYTES = 16
EMPTY = bytes(TOKEN_BYTES)

__all__ = [
    "EMPTY",
    "FANOUT",
    "GROUPS",
    "SLOTLETS",
    "TOKEN_BYTES",
    "HeadKey",
    "Reconciliation",
    "SlotDigest",
    "differing",
    "differing_slotlets",
    "reconcile",
    "slotlet_of",
    "token_of",
    "xor",
]


def slotlet_of(path: str) -> int:
    """The slotlet of `path`: the last byte of its SHA-256 (the slot uses the first eight)."""
    return hashlib.sha256(path.encode("utf-8")).digest()[-1]


def token_of(path: str, head_sha256: str) -> bytes:
    """A head's token: 16 bytes of a hash of its path and its SHA-256 (hex).
    The path is hashed in so that two paths swapping heads change the digest
    (a head's SHA-256 covers its path already; the token does not rely on it)."""
    return hashlib.sha256(f"{path}\0{head_sha256}".encode()).digest()[:TOKEN_BYTES]


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(TOKEN_BYTES, "big")


def _hash(parts: Iterable[bytes]) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()[:TOKEN_BYTES]


@dataclass(frozen=True, slots=True)
class SlotDigest:
    """The slotlet digests of one slot on one replica (`SLOTLETS` of them)."""

    slotlets: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.slotlets) != SLOTLETS or any(len(d) != TOKEN_BYTES for d in self.slotlets):
            raise ValueError(f"a slot digest has {SLOTLETS} slotlets of {TOKEN_BYTES} bytes")

    @classmethod
    def empty(cls) -> SlotDigest:
        return cls((EMPTY,) * SLOTLETS)

    @classmethod
    def of_heads(cls, heads: Iterable[tuple[str, str]]) -> SlotDigest:
        """The digest of (path, head sha256) pairs, computed from scratch."""
        slotlets = [0] * SLOTLETS
        for path, sha in heads:
            slotlets[slotlet_of(path)] ^= int.from_bytes(token_of(path, sha), "big")
        return cls(tuple(v.to_bytes(TOKEN_BYTES, "big") for v in slotlets))

    @classmethod
    def from_sparse(cls, nonzero: Mapping[int, bytes]) -> SlotDigest:
        """From the slotlets that are not empty (what storage keeps)."""
        slotlets = [EMPTY] * SLOTLETS
        for index, value in nonzero.items():
            slotlets[index] = value
        return cls(tuple(slotlets))

    def group(self, index: int) -> tuple[bytes, ...]:
        """The `FANOUT` slotlet digests of group `index`."""
        return self.slotlets[index * FANOUT:(index + 1) * FANOUT]

    def groups(self) -> tuple[bytes, ...]:
        """One digest per group: a hash of its slotlets' (all-zero when all are empty)."""
        return tuple(EMPTY if all(d == EMPTY for d in self.group(g)) else _hash(self.group(g))
                     for g in range(GROUPS))

    def top(self) -> bytes:
        """The slot's digest: the XOR of every slotlet's (of every head's token),
        so storage keeps it up to date in O(1) per write like a slotlet's."""
        out = 0
        for d in self.slotlets:
            out ^= int.from_bytes(d, "big")
        return out.to_bytes(TOKEN_BYTES, "big")


def differing_slotlets(mine: SlotDigest, theirs: SlotDigest) -> list[int]:
    """The slotlets where two digests of a slot differ, found the way two
    replicas do over the wire: groups first, then the slotlets of the groups
    that differ."""
    if mine.top() == theirs.top():
        return []
    out: list[int] = []
    for g in differing(mine.groups(), theirs.groups()):
        out += [g * FANOUT + i for i in differing(mine.group(g), theirs.group(g))]
    return out


def differing(mine: Sequence[bytes], theirs: Sequence[bytes]) -> list[int]:
    """The positions where two equally long digest lists differ."""
    if len(mine) != len(theirs):
        raise ValueError("digest lists of different lengths")
    return [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]


@dataclass(frozen=True, slots=True, order=True)
class HeadKey:
    """A head's place in the head order (RFC 0001): what a digest exchange
    ships per path instead of the head itself."""

    generation: int
    deleted: bool
    sha256: str

    def beats(self, other: HeadKey | None) -> bool:
        return other is None or self > other


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What two replicas must do about the paths where their heads differ."""

    pull: tuple[str, ...]  # the other side's head wins: take it
    push: tuple[str, ...]  # ours wins: give it

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self.pull) | frozenset(self.push)


def reconcile(mine: Mapping[str, HeadKey], theirs: Mapping[str, HeadKey]) -> Reconciliation:
    """Compare two replicas' heads of the same slotlets, by head order."""
    pull, push = [], []
    for path in sorted(set(mine) | set(theirs)):
        a, b = mine.get(path), theirs.get(path)
        if a == b:
            continue
        if b is not None and b.beats(a):
            pull.append(path)
        else:
            push.append(path)
    return Reconciliation(tuple(pull), tuple(push))
