"""The layout frame: a `Layout` as msgpack on the wire (RFC 0011 §6).

One map ``{"t": "layout", "ts": total_slots, "r": R, "w": W or nil,
"m": [[node, address, role], ...], "h": [[node, seq, bitmap], ...],
"v": 1, "c": cluster}``. A node's holdings travel as a bitmap of
`ceil(total_slots / 8)` bytes (slot s is bit `s % 8` of byte `s // 8`):
256 bytes for 2048 slots, whatever the node holds.

Decoding is a trust boundary, as for `rimio.core.frames`: whatever the bytes,
`decode_layout` returns a layout or raises `FrameError`. The size is checked
first, lists are checked header by header as they are read, values under
unknown keys are skipped without being built.

The codec remembers the last few holdings it encoded or decoded (by
total_slots, seq and bitmap): a frame whose holdings did not change since
decodes to the very same `Holding` objects, so neither their slot sets nor
merge's comparisons of them cost anything (most exchanges change nothing).
"""

from __future__ import annotations

import threading
from typing import Any, Final

import msgpack

from rimio.core.frames import (
    MAX_ADDR_LEN,
    MAX_CLUSTER_LEN,
    MAX_ID_LEN,
    VERSION,
    BoundedReader,
    FrameError,
    FrameErrorReason,
)
from rimio.core.layout import Holding, Layout, Member, Role

FRAME_TYPE: Final = "layout"
MAX_MEMBERS: Final = 1024
MAX_TOTAL_SLOTS: Final = 1 << 20
MAX_REPLICAS: Final = 16
MAX_UINT: Final = 2**63 - 1
_MAX_KEYS: Final = 16
_ROW: Final = 3


# Holdings met on the wire or encoded lately, by (total_slots, seq, bitmap):
# most exchanges carry holdings that did not change since the last one, and
# decoding them to the very same objects skips building their sets again and
# makes merge's comparisons identity checks. Bounded; oldest out first.
# (A node loads its persisted layout in a worker thread: the lock keeps the
# eviction safe against another node of the same process decoding meanwhile.)
_HOLDINGS: dict[tuple[int, int, bytes], Holding] = {}
_HOLDINGS_KEPT: Final = 32  # ~100 KiB each at 2048 slots, when no layout holds them
_HOLDINGS_LOCK = threading.Lock()


def _remember(key: tuple[int, int, bytes], holding: Holding) -> None:
    with _HOLDINGS_LOCK:
        _HOLDINGS.pop(key, None)
        _HOLDINGS[key] = holding
        while len(_HOLDINGS) > _HOLDINGS_KEPT:
            del _HOLDINGS[next(iter(_HOLDINGS))]


def _bitmap(holding: Holding, total_slots: int) -> bytes:
    bitmap = holding.bits.to_bytes((total_slots + 7) // 8, "little")
    key = (total_slots, holding.seq, bitmap)
    if _HOLDINGS.get(key) is not holding:
        _remember(key, holding)
    return bitmap


def _holding(seq: int, bitmap: bytes, total_slots: int) -> Holding:
    """The holding of a (size-checked) bitmap; FrameError if it names a slot
    beyond total_slots."""
    key = (total_slots, seq, bitmap)
    found = _HOLDINGS.get(key)
    if found is None:
        bits = int.from_bytes(bitmap, "little")
        if bits >> total_slots:
            raise _shape("a holding names a slot beyond total_slots")
        found = Holding.from_bits(seq, bits)
        _remember(key, found)
    return found


def encode_layout(layout: Layout, *, cluster: str) -> bytes:
    body = {
        "t": FRAME_TYPE,
        "ts": layout.total_slots,
        "r": layout.replicas,
        "w": layout.write_quorum,
        "m": [[n, m.address, m.role.value] for n, m in sorted(layout.members.items())],
        "h": [[n, h.seq, _bitmap(h, layout.total_slots)]
              for n, h in sorted(layout.holdings.items())],
        "v": VERSION,
        "c": cluster,
    }
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def _shape(detail: str) -> FrameError:
    return FrameError(FrameErrorReason.SHAPE, detail)


class _Reader(BoundedReader):
    """Reads the layout frame's map from untrusted bytes, every size bounded."""

    __slots__ = ()

    def __init__(self, data: bytes) -> None:
        super().__init__(data, max_str_len=4 * MAX_ADDR_LEN, max_bin_len=MAX_TOTAL_SLOTS // 8,
                         max_array_len=MAX_MEMBERS, max_map_len=_MAX_KEYS)

    def rows(self, what: str) -> list[list[Any]]:
        out = []
        for _ in range(self.array(MAX_MEMBERS, f"field {what!r}")):
            if self.array(MAX_MEMBERS, "a row") != _ROW:
                raise _shape(f"rows of {what!r} must have {_ROW} items")
            out.append([self.scalar("a row item") for _ in range(_ROW)])
        return out

    def body(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for _ in range(self.frame_map(_MAX_KEYS)):
            key = self.frame_key(obj)
            if key in ("m", "h"):
                obj[key] = self.rows(key)
            elif key in ("t", "ts", "r", "w", "v", "c"):
                obj[key] = self.scalar(f"field {key!r}")
            else:
                self.skip()
        self.check_end()
        return obj


def _uint(raw: Any, what: str, low: int = 0, high: int = MAX_UINT) -> int:
    if type(raw) is not int or not low <= raw <= high:
        raise _shape(f"{what} must be an integer in {low}..{high}")
    return raw


def _text(raw: Any, what: str, max_len: int) -> str:
    if type(raw) is not str or not 0 < len(raw) <= max_len:
        raise _shape(f"{what} must be a string of 1..{max_len} characters")
    return raw


def decode_layout(data: bytes, *, max_size: int, cluster: str | None = None) -> Layout:
    """Parse untrusted bytes into a layout, or raise `FrameError`."""
    if len(data) > max_size:
        raise FrameError(FrameErrorReason.TOO_LARGE, f"{len(data)} > {max_size} bytes")
    try:
        obj = _Reader(data).body()
    except FrameError:
        raise
    except Exception as exc:  # untrusted input: any failure is one error
        raise FrameError(FrameErrorReason.MSGPACK, type(exc).__name__) from None
    v = obj.get("v")
    if type(v) is not int:
        raise _shape("field 'v' must be an integer")
    if v != VERSION:
        raise FrameError(FrameErrorReason.VERSION, str(v))
    t = obj.get("t")
    if type(t) is not str:
        raise _shape("field 't' must be a string")
    if t != FRAME_TYPE:
        raise FrameError(FrameErrorReason.UNKNOWN_TYPE, t[:64])
    c = _text(obj.get("c"), "field 'c'", MAX_CLUSTER_LEN)
    if cluster is not None and c != cluster:
        raise FrameError(FrameErrorReason.WRONG_CLUSTER, c)
    total = _uint(obj.get("ts"), "total_slots", 1, MAX_TOTAL_SLOTS)
    replicas = _uint(obj.get("r"), "replicas", 1, MAX_REPLICAS)
    w_raw = obj.get("w")
    w = None if w_raw is None else _uint(w_raw, "write_quorum", 1, replicas)
    members: dict[str, Member] = {}
    for node, address, role in obj.get("m", []):
        node = _text(node, "member id", MAX_ID_LEN)
        if node in members:
            raise _shape(f"member {node!r} listed twice")
        try:
            parsed_role = Role(_text(role, "role", 16))
        except ValueError:
            raise _shape(f"unknown role {role!r}") from None
        members[node] = Member(_text(address, "member address", MAX_ADDR_LEN), parsed_role)
    holdings: dict[str, Holding] = {}
    width = (total + 7) // 8
    for node, seq, bitmap in obj.get("h", []):
        node = _text(node, "holding id", MAX_ID_LEN)
        if node in holdings or node not in members:
            raise _shape(f"holding of {node!r}: listed twice or not a member")
        if type(bitmap) is not bytes or len(bitmap) != width:
            raise _shape(f"a holding must be a bitmap of {width} bytes")
        holdings[node] = _holding(_uint(seq, "holding seq"), bitmap, total)
    try:
        return Layout(total, replicas, w, members, holdings)
    except ValueError as exc:
        raise _shape(str(exc)) from None
