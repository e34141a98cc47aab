"""The msgpack frames of a digest exchange (RFC 0014 §3): what one replica
asks another about its slot digests, and the answers.

One route, `POST /internal/v1/digest`, carries every question; the frame
says which:

* ``{"v": 1, "q": "tops"}`` → ``{"tops": [[slot, digest], ...]}``: the digest
  of every slot with heads on the replica (a slot not named is empty).
* ``{"v": 1, "q": "groups", "slot": s}`` → ``{"groups": [GROUPS digests]}``.
* ``{"v": 1, "q": "slotlets", "slot": s, "groups": [g, ...]}`` →
  ``{"slotlets": [[index, digest], ...]}``: the non-empty slotlets of those
  groups.
* ``{"v": 1, "q": "heads", "slot": s, "slotlets": [i, ...]}`` →
  ``{"heads": [[path, generation, deleted, head sha256], ...]}``.
* ``{"v": 1, "q": "held", "slot": s, "heads": [[path, generation, deleted,
  sha256], ...]}`` → ``{"paths": [path, ...]}``: those of the named heads
  that are the current head of their path on the replica (RFC 0015).
* ``{"v": 1, "q": "purge", "slot": s, "heads": [...]}`` → ``{"paths": [...]}``:
  the named tombstones the replica forgot because they were still current.
  At most `MAX_NAMED` heads per question.

A digest is 16 raw bytes. Decoding is a trust boundary on both sides: a
question that does not parse raises `BadRequest`, an answer that does not
parse raises `DigestWireError`; nothing else escapes, whatever the bytes.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from rimio.core.digest import GROUPS, SLOTLETS, TOKEN_BYTES, HeadKey
from rimio.core.errors import BadRequest

VERSION: Final = 1
QUESTIONS: Final = ("tops", "groups", "slotlets", "heads", "held", "purge")
# A "held" or "purge" question names at most this many heads.
MAX_NAMED: Final = 256
# One answer names at most this many heads: far more than a slotlet of an
# edge cluster holds (a slot of 16 M objects has 64 K per slotlet).
MAX_HEADS: Final = 1 << 16
MAX_PATH: Final = 4096
MAX_SLOTS: Final = 1 << 16
_MAX_UINT: Final = (1 << 63) - 1


class DigestWireError(ValueError):
    """An answer to a digest question that does not parse."""


@dataclass(frozen=True, slots=True)
class DigestQuestion:
    kind: str  # one of QUESTIONS
    slot: int = 0
    indexes: tuple[int, ...] = ()  # groups (kind "slotlets") or slotlets (kind "heads")
    named: tuple[tuple[str, HeadKey], ...] = ()  # kinds "held" and "purge"


def encode_question(q: DigestQuestion) -> bytes:
    body: dict[str, Any] = {"v": VERSION, "q": q.kind}
    if q.kind != "tops":
        body["slot"] = q.slot
    if q.kind == "slotlets":
        body["groups"] = list(q.indexes)
    elif q.kind == "heads":
        body["slotlets"] = list(q.indexes)
    elif q.kind in _NAMING:
        body["heads"] = [[p, k.generation, k.deleted, k.sha256] for p, k in q.named]
    return _pack(body)


_NAMING: Final = ("held", "purge")


def decode_question(data: bytes, *, total_slots: int) -> DigestQuestion:
    """Parse a question from untrusted bytes; BadRequest on any defect."""
    try:
        raw = _unpack(data, max_array_len=SLOTLETS, max_bin_len=0)
        if not isinstance(raw, Mapping) or raw.get("v") != VERSION:
            raise ValueError(f"a digest question is a map with 'v': {VERSION}")
        kind = raw.get("q")
        if kind not in QUESTIONS:
            raise ValueError(f"'q' must be one of {', '.join(QUESTIONS)}")
        allowed = {"v", "q"} | ({"slot"} if kind != "tops" else set())
        allowed |= {"slotlets": {"groups"}, "heads": {"slotlets"}, "held": {"heads"},
                    "purge": {"heads"}}.get(kind, set())
        if set(raw) != allowed:
            raise ValueError(f"a {kind!r} question has exactly the keys {sorted(allowed)}")
        if kind == "tops":
            return DigestQuestion("tops")
        slot = _uint(raw["slot"], "slot")
        if slot >= total_slots:
            raise ValueError(f"slot {slot} is out of range")
        indexes: tuple[int, ...] = ()
        if kind == "slotlets":
            indexes = _indexes(raw["groups"], GROUPS, "groups")
        elif kind == "heads":
            indexes = _indexes(raw["slotlets"], SLOTLETS, "slotlets")
        elif kind in _NAMING:
            rows = raw["heads"]
            if not isinstance(rows, list) or not 0 < len(rows) <= MAX_NAMED:
                raise ValueError(f"'heads' must name 1 to {MAX_NAMED} heads")
            named = dict(_head_row(row) for row in rows)
            if len(named) != len(rows):
                raise ValueError("'heads' must name each path once")
            return DigestQuestion(kind, slot, named=tuple(named.items()))
        return DigestQuestion(kind, slot, indexes)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise BadRequest(f"malformed digest question: {exc}") from None


# -- answers -------------------------------------------------------------------


def encode_tops(tops: Mapping[int, bytes]) -> bytes:
    return _pack({"tops": [[s, d] for s, d in sorted(tops.items())]})


def encode_groups(groups: Sequence[bytes]) -> bytes:
    return _pack({"groups": list(groups)})


def encode_slotlets(slotlets: Mapping[int, bytes]) -> bytes:
    return _pack({"slotlets": [[i, d] for i, d in sorted(slotlets.items())]})


def encode_heads(heads: Mapping[str, HeadKey]) -> bytes:
    return _pack({"heads": [[p, k.generation, k.deleted, k.sha256]
                            for p, k in sorted(heads.items())]})


def decode_tops(data: bytes, *, total_slots: int) -> dict[int, bytes]:
    pairs = _answer(data, "tops", max(total_slots, 1))
    return dict(_pairs(pairs, total_slots, "tops"))


def decode_groups(data: bytes) -> tuple[bytes, ...]:
    raw = _answer(data, "groups", GROUPS)
    if len(raw) != GROUPS:
        raise DigestWireError(f"'groups' must have {GROUPS} digests")
    return tuple(_digest(d, "groups") for d in raw)


def decode_slotlets(data: bytes) -> dict[int, bytes]:
    return dict(_pairs(_answer(data, "slotlets", SLOTLETS), SLOTLETS, "slotlets"))


def decode_heads(data: bytes) -> dict[str, HeadKey]:
    return dict(_head_row(row) for row in _answer(data, "heads", MAX_HEADS))


def encode_paths(paths: Iterable[str]) -> bytes:
    return _pack({"paths": sorted(paths)})


def decode_paths(data: bytes) -> set[str]:
    out = set()
    for path in _answer(data, "paths", MAX_NAMED):
        if not isinstance(path, str) or not path or len(path) > MAX_PATH:
            raise DigestWireError("'paths' holds non-empty strings")
        out.add(path)
    return out


def _head_row(row: Any) -> tuple[str, HeadKey]:
    if not isinstance(row, list) or len(row) != 4:
        raise DigestWireError("a head row is [path, generation, deleted, sha256]")
    path, generation, deleted, sha = row
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise DigestWireError("a head row's path must be a non-empty string")
    if type(generation) is not int or not 0 <= generation <= _MAX_UINT:
        raise DigestWireError("a head row's generation must be an unsigned integer")
    if type(deleted) is not bool:
        raise DigestWireError("a head row's 'deleted' must be a boolean")
    if (not isinstance(sha, str) or len(sha) != 64
            or any(c not in "0123456789abcdef" for c in sha)):
        raise DigestWireError("a head row's sha256 must be 64 hex digits")
    return path, HeadKey(generation, deleted, sha)


# -- helpers -------------------------------------------------------------------


def _pack(body: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def _unpack(data: bytes, *, max_array_len: int, max_bin_len: int) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=MAX_PATH,
                           max_bin_len=max_bin_len, max_array_len=max_array_len,
                           max_map_len=8, max_ext_len=0)


def _answer(data: bytes, key: str, max_items: int) -> list[Any]:
    try:
        raw = _unpack(data, max_array_len=max(max_items, 4), max_bin_len=TOKEN_BYTES)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise DigestWireError(f"the digest answer is not one msgpack map within bounds "
                              f"({exc})") from None
    if not isinstance(raw, Mapping) or set(raw) != {key} or not isinstance(raw[key], list):
        raise DigestWireError(f"the digest answer must be {{{key!r}: [...]}}")
    value: list[Any] = raw[key]
    return value


def _pairs(raw: list[Any], limit: int, what: str) -> list[tuple[int, bytes]]:
    out = []
    for pair in raw:
        if (not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not int
                or not 0 <= pair[0] < limit):
            raise DigestWireError(f"'{what}' holds [index, digest] pairs within range")
        out.append((pair[0], _digest(pair[1], what)))
    return out


def _digest(raw: Any, what: str) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != TOKEN_BYTES:
        raise DigestWireError(f"'{what}' digests are {TOKEN_BYTES} bytes")
    return raw


def _uint(raw: Any, what: str) -> int:
    if type(raw) is not int or not 0 <= raw <= _MAX_UINT:
        raise ValueError(f"{what!r} must be an unsigned integer")
    return raw


def _indexes(raw: Any, limit: int, what: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{what!r} must be a non-empty list")
    out = tuple(_uint(i, what) for i in raw)
    if any(i >= limit for i in out) or len(set(out)) != len(out):
        raise ValueError(f"{what!r} must be distinct indexes below {limit}")
    return out
