"""Object heads and the head order (RFC 0001, "Head order").

A head is the small record that makes a generation of an object visible: a
`meta` head for a written object, a `tombstone` for a delete. The head order
is the one rule that makes replicas converge: higher generation wins; at equal
generation a tombstone beats a meta; then the larger head SHA-256 wins. Clocks
never take part in it (`updated_at` is informational only).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from rimio.core.errors import MalformedHead

HeadKind = Literal["meta", "tombstone"]


@dataclass(frozen=True, slots=True)
class Head:
    """One generation of one path: either its content (`meta`) or its deletion."""

    kind: HeadKind
    path: str
    slot_id: int
    generation: int
    write_id: str
    # meta only
    size_bytes: int = 0
    etag: str = ""
    part_size: int = 0
    part_count: int = 0
    # wall-clock seconds; `updated_at` for meta, `deleted_at` for tombstones
    timestamp: float = 0.0
    sha256: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "tombstone":
            # A tombstone has no content: the content fields are not part of
            # what it is, so they are pinned to zero and two tombstones that
            # hash the same also compare equal.
            for name in ("size_bytes", "part_size", "part_count"):
                object.__setattr__(self, name, 0)
            object.__setattr__(self, "etag", "")
        digest = hashlib.sha256(canonical_json(self.to_dict())).hexdigest()
        object.__setattr__(self, "sha256", digest)

    @property
    def deleted(self) -> bool:
        return self.kind == "tombstone"

    def to_dict(self) -> dict[str, Any]:
        """The wire/storage form, in the shapes RFC 0001 gives."""
        if self.kind == "tombstone":
            return {
                "kind": "tombstone",
                "path": self.path,
                "slot_id": self.slot_id,
                "generation": self.generation,
                "write_id": self.write_id,
                "deleted_at": self.timestamp,
            }
        return {
            "kind": "meta",
            "path": self.path,
            "slot_id": self.slot_id,
            "generation": self.generation,
            "write_id": self.write_id,
            "size_bytes": self.size_bytes,
            "etag": self.etag,
            "part_size": self.part_size,
            "part_count": self.part_count,
            "updated_at": self.timestamp,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Head:
        """Parse a head from untrusted data; raises `MalformedHead` on any defect."""
        try:
            kind = data["kind"]
            if kind == "tombstone":
                return cls(
                    kind="tombstone",
                    path=_str(data["path"]),
                    slot_id=_int(data["slot_id"]),
                    generation=_int(data["generation"]),
                    write_id=_str(data["write_id"]),
                    timestamp=_float(data["deleted_at"]),
                )
            if kind == "meta":
                return cls(
                    kind="meta",
                    path=_str(data["path"]),
                    slot_id=_int(data["slot_id"]),
                    generation=_int(data["generation"]),
                    write_id=_str(data["write_id"]),
                    size_bytes=_int(data["size_bytes"]),
                    etag=_str(data["etag"]),
                    part_size=_int(data["part_size"]),
                    part_count=_int(data["part_count"]),
                    timestamp=_float(data["updated_at"]),
                )
        except (KeyError, TypeError) as exc:
            raise MalformedHead(f"malformed head: {exc}") from None
        raise MalformedHead("malformed head: unknown kind")


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise TypeError("expected a non-negative integer")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError("expected a number")
    return float(v)


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def order_key(head: Head) -> tuple[int, int, str]:
    """Sort key of the head order: larger key wins."""
    return (head.generation, 1 if head.kind == "tombstone" else 0, head.sha256)


def beats(candidate: Head, current: Head | None) -> bool:
    """True when `candidate` wins over `current` (any head beats no head)."""
    if current is None:
        return True
    return order_key(candidate) > order_key(current)


def winner(heads: list[Head]) -> Head | None:
    """The winning head of a set, or None for an empty set."""
    return max(heads, key=order_key, default=None)
