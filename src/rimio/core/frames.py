"""Gossip frame codec: the msgpack wire format of the membership protocol.

This module owns the frame types (frozen, slotted dataclasses), their wire
layouts, and the validation of untrusted bytes. Every frame is one msgpack
map ``{"t": <type>, ..., "v": 1, "c": <cluster name>}``; the remaining keys
are short field names chosen per type. Each type's keys and field codecs are
declared once, in a table (`_LAYOUTS`); encoding and decoding are both
derived from it by `rimio.core.wire`.

Decoding is the trust boundary: whatever the bytes, `decode` returns a frame
or raises `FrameError` and nothing else. The error's `reason` tells callers
*why*, so they can count "unknown type" / "unknown version" (forward
compatible, ignore quietly) apart from garbage and from other clusters.

Membership updates (`Alive`, `Suspect`, `Dead`, `Leave`) are frames of their
own and also ride piggybacked, as a list, inside `Ping`, `Ack`, `PingReq` and
`Gossip` frames. Every update carries the member's address so that each one is
self-sufficient: a member table merges them as a join-semilattice (see
`rimio.core.swim.table`), independent of arrival order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

import msgpack

from rimio.core import wire

VERSION: Final = 1

# Bounds for untrusted input (RFC 0005 §5). Generous for an edge cluster of
# 3-100 nodes, small enough that one frame cannot make us allocate much.
MAX_ID_LEN: Final = 128
MAX_ADDR_LEN: Final = 256
MAX_CLUSTER_LEN: Final = 128
MAX_KIND_LEN: Final = 64
MAX_UPDATES: Final = 256
MAX_STATES: Final = 4096
MAX_UINT: Final = wire.MAX_UINT
DEFAULT_MAX_SIZE: Final = 1 << 20
# A packet frame (ping, ack, gossip, ...) is refused beyond this, whatever the
# frame size limit; `SwimConfig.packet_budget` must fit in it.
MAX_PACKET_SIZE: Final = 1 << 16
# Incarnations above this are refused by the membership machine: far inside
# the wire type (MAX_UINT), so a refutation (+1) can never overflow it. An
# accusation (suspect, dead) must stay below it, so that it can always be
# refuted by a higher incarnation that peers still accept.
MAX_INCARNATION: Final = 1 << 62


class Status(enum.StrEnum):
    """A member's status as seen by one node."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"

    @property
    def counts_as_alive(self) -> bool:
        """Whether requests and gossip are still sent to a member in this status.

        A suspect is still tried: suspicion is a question the member can
        refute, not a verdict.
        """
        return self is Status.ALIVE or self is Status.SUSPECT


class FrameErrorReason(enum.StrEnum):
    """Why a frame was refused; callers count these separately."""

    TOO_LARGE = "too_large"
    MSGPACK = "msgpack"  # not one well-formed msgpack object
    SHAPE = "shape"  # not a map, missing or mistyped fields, out of bounds
    VERSION = "version"  # a version we do not speak: ignore, never fatal
    UNKNOWN_TYPE = "unknown_type"  # a type we do not know: ignore, never fatal
    WRONG_CLUSTER = "wrong_cluster"  # another cluster's frame: drop and count


class FrameError(Exception):
    """The only exception `decode` raises for untrusted input."""

    def __init__(self, reason: FrameErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------
# Frame types


@dataclass(frozen=True, slots=True)
class Alive:
    """`node` is alive at `address` with `incarnation` (also: a refutation)."""

    TYPE: ClassVar[str] = "alive"
    node: str
    address: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """`sender` suspects `node` at `incarnation`."""

    TYPE: ClassVar[str] = "suspect"
    node: str
    address: str
    incarnation: int
    sender: str


@dataclass(frozen=True, slots=True)
class Dead:
    """`sender` declared `node` dead at `incarnation`."""

    TYPE: ClassVar[str] = "dead"
    node: str
    address: str
    incarnation: int
    sender: str


@dataclass(frozen=True, slots=True)
class Leave:
    """`node` announced it is leaving the cluster (graceful)."""

    TYPE: ClassVar[str] = "leave"
    node: str
    address: str
    incarnation: int


Update: TypeAlias = Alive | Suspect | Dead | Leave


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe. `target` names the node expected at the address, so a
    different process now listening there does not answer for it."""

    TYPE: ClassVar[str] = "ping"
    seq: int
    target: str
    source: str
    source_address: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe `target` on our behalf (indirect probe)."""

    TYPE: ClassVar[str] = "ping-req"
    seq: int
    target: str
    target_address: str
    source: str
    source_address: str
    want_nack: bool
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a ping; `source` is the node that was probed."""

    TYPE: ClassVar[str] = "ack"
    seq: int
    source: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """An indirect probe relay could not reach the target in time."""

    TYPE: ClassVar[str] = "nack"
    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Gossip:
    """Updates only, sent to a few random members every gossip interval."""

    TYPE: ClassVar[str] = "gossip"
    source: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberState:
    """One row of a full-state exchange."""

    node: str
    address: str
    status: Status
    incarnation: int


@dataclass(frozen=True, slots=True)
class PushPullRequest:
    """Full state of the sender; the receiver merges it and answers with its own."""

    TYPE: ClassVar[str] = "push-pull-req"
    seq: int
    source: str
    source_address: str
    join: bool
    states: tuple[MemberState, ...] = ()


@dataclass(frozen=True, slots=True)
class PushPullResponse:
    """Full state of the responder, after it merged the request."""

    TYPE: ClassVar[str] = "push-pull-resp"
    seq: int
    source: str
    states: tuple[MemberState, ...] = ()


@dataclass(frozen=True, slots=True)
class User:
    """Opaque application payload (slot-map deltas, anti-entropy summaries)."""

    TYPE: ClassVar[str] = "user"
    source: str
    kind: str
    payload: bytes


Frame: TypeAlias = (
    Alive
    | Suspect
    | Dead
    | Leave
    | Ping
    | PingReq
    | Ack
    | Nack
    | Gossip
    | PushPullRequest
    | PushPullResponse
    | User
)

# --------------------------------------------------------------------------
# Wire layouts: each frame type's keys and field codecs, declared once.
# The table order is the key order on the wire (after "t"; "v" and "c" come
# last), so the bytes stay what they have always been.

_ID = wire.Text(MAX_ID_LEN)
_ADDR = wire.Text(MAX_ADDR_LEN)
_CLUSTER = wire.Text(MAX_CLUSTER_LEN)
_UINT = wire.UInt()
_BOOL = wire.Bool()
_Row = tuple[str, str, wire.Codec[Any]]  # (dataclass field, wire key, codec)


def _layout(record: type[Any], *rows: _Row) -> wire.Layout[Any]:
    return wire.Layout(record, tuple(wire.WireField(*row) for row in rows), what=record.TYPE)


_UPDATE_LAYOUTS: Final[dict[str, wire.Layout[Any]]] = {
    Alive.TYPE: _layout(Alive, ("node", "n", _ID), ("address", "a", _ADDR),
                        ("incarnation", "i", _UINT)),
    Suspect.TYPE: _layout(Suspect, ("node", "n", _ID), ("address", "a", _ADDR),
                          ("incarnation", "i", _UINT), ("sender", "f", _ID)),
    Dead.TYPE: _layout(Dead, ("node", "n", _ID), ("address", "a", _ADDR),
                       ("incarnation", "i", _UINT), ("sender", "f", _ID)),
    Leave.TYPE: _layout(Leave, ("node", "n", _ID), ("address", "a", _ADDR),
                        ("incarnation", "i", _UINT)),
}

_UPDATE: Final = wire.Tagged("t", _UPDATE_LAYOUTS, "update")
_UPDATES: Final = wire.ListOf(_UPDATE, MAX_UPDATES)

# Rows are arrays, not maps: a push-pull of 100 members stays small. The
# keys only name the columns in error messages.
_MEMBER_STATE: Final = wire.Layout(
    MemberState,
    tuple(wire.WireField(name, name, codec) for name, codec in (
        ("node", _ID), ("address", _ADDR), ("status", wire.EnumText(Status, 16)),
        ("incarnation", _UINT))),
    what="member state",
    as_row=True,
)
_STATES: Final = wire.ListOf(_MEMBER_STATE, MAX_STATES)

_LAYOUTS: Final[dict[str, wire.Layout[Any]]] = {
    **_UPDATE_LAYOUTS,
    Ping.TYPE: _layout(Ping, ("seq", "s", _UINT), ("target", "tn", _ID),
                       ("source", "sn", _ID), ("source_address", "sa", _ADDR),
                       ("updates", "u", _UPDATES)),
    PingReq.TYPE: _layout(PingReq, ("seq", "s", _UINT), ("target", "tn", _ID),
                          ("target_address", "ta", _ADDR), ("source", "sn", _ID),
                          ("source_address", "sa", _ADDR), ("want_nack", "k", _BOOL),
                          ("updates", "u", _UPDATES)),
    Ack.TYPE: _layout(Ack, ("seq", "s", _UINT), ("source", "sn", _ID),
                      ("updates", "u", _UPDATES)),
    Nack.TYPE: _layout(Nack, ("seq", "s", _UINT), ("source", "sn", _ID)),
    Gossip.TYPE: _layout(Gossip, ("source", "sn", _ID), ("updates", "u", _UPDATES)),
    PushPullRequest.TYPE: _layout(PushPullRequest, ("seq", "s", _UINT),
                                  ("source", "sn", _ID), ("source_address", "sa", _ADDR),
                                  ("join", "j", _BOOL), ("states", "m", _STATES)),
    PushPullResponse.TYPE: _layout(PushPullResponse, ("seq", "s", _UINT),
                                   ("source", "sn", _ID), ("states", "m", _STATES)),
    User.TYPE: _layout(User, ("source", "sn", _ID), ("kind", "kd", wire.Text(MAX_KIND_LEN)),
                       ("payload", "p", wire.Blob())),
}

# Every frame is the tagged union of all layouts, under the key "t".
_FRAME: Final = wire.Tagged("t", _LAYOUTS, "frame")

FRAME_TYPES: Final = frozenset(_LAYOUTS)
# Frames that may be large (full state, application payloads); every other
# type is a packet, at most `MAX_PACKET_SIZE` bytes.
STREAM_TYPES: Final = frozenset({PushPullRequest.TYPE, PushPullResponse.TYPE, User.TYPE})
# Every key any frame layout uses (plus the envelope's "t", "v", "c").
_KNOWN_KEYS: Final = frozenset({"t", "v", "c"} | {
    column.key for layout in _LAYOUTS.values() for column in layout.fields})

# --------------------------------------------------------------------------
# Encoding


def encode(frame: Frame, *, cluster: str) -> bytes:
    """Serialize `frame` for the cluster named `cluster`."""
    body: dict[str, Any] = _FRAME.encode(frame)
    body["v"] = VERSION
    body["c"] = cluster
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def encoded_update_size(update: Update) -> int:
    """Bytes one piggybacked update adds to a frame (for packing to a budget)."""
    return len(msgpack.packb(_UPDATE.encode(update), use_bin_type=True))


# --------------------------------------------------------------------------
# Decoding


def _shape(detail: str) -> FrameError:
    return FrameError(FrameErrorReason.SHAPE, detail)


def decode(data: bytes, *, max_size: int, cluster: str | None = None) -> Frame:
    """Parse untrusted bytes into a frame, or raise `FrameError`.

    The size is checked before anything is parsed, and the frame is read
    field by field (`_read_body`): its list fields are checked for shape as
    they are read and the values of unknown keys are skipped unbuilt, so no
    frame, whatever its bytes, makes us build more than a few thousand
    objects. Packet frames (all but push-pull and user) are further capped
    at `MAX_PACKET_SIZE` as soon as their type is read.

    With `cluster` given, a frame of another cluster raises
    `FrameError(WRONG_CLUSTER)`; the check comes after version and type so a
    newer peer's frame is reported as such rather than as a stranger's.
    """
    if len(data) > max_size:
        raise FrameError(FrameErrorReason.TOO_LARGE, f"{len(data)} > {max_size} bytes")
    obj = _read_body(data, max_size)
    v = obj.get("v")
    if type(v) is not int:
        raise _shape("field 'v' must be an integer")
    if v != VERSION:
        raise FrameError(FrameErrorReason.VERSION, str(v))
    t = obj.get("t")
    if type(t) is not str:
        raise _shape("field 't' must be a string")
    layout = _LAYOUTS.get(t)
    if layout is None:
        raise FrameError(FrameErrorReason.UNKNOWN_TYPE, t[:MAX_KIND_LEN])
    try:
        c = _CLUSTER.decode(obj.get("c"), "c")
        if cluster is not None and c != cluster:
            raise FrameError(FrameErrorReason.WRONG_CLUSTER, c)
        frame: Frame = layout.decode(obj, t)
    except wire.WireShapeError as exc:
        raise _shape(str(exc)) from None
    return frame


# --------------------------------------------------------------------------
# The bounded reader under `decode`

# msgpack format bytes that open a map or an array (fix, 16- and 32-bit).
_MAP_BYTES: Final = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
_ARRAY_BYTES: Final = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_CONTAINER_BYTES: Final = _MAP_BYTES | _ARRAY_BYTES
# A frame has about ten keys and an update five; leave room for additions.
MAX_FRAME_KEYS: Final = 32
MAX_UPDATE_KEYS: Final = 16
# Longest string on the wire, in UTF-8 bytes (a 256-character address).
MAX_TEXT_BYTES: Final = 4 * MAX_ADDR_LEN
_STATE_ROW: Final = len(_MEMBER_STATE.fields)  # node, address, status, incarnation


class BoundedReader:
    """Reads msgpack from untrusted bytes with every size bounded: scalars
    are read only after their format byte says they are scalars, lists and
    maps header by header with their length checked, and msgpack's own
    `max_*_len` limits bound every string and blob. Frame readers (here and
    in `rimio.core.layout_frames`) build their frame's shape on it."""

    __slots__ = ("_data", "_u")

    def __init__(self, data: bytes, *, max_str_len: int, max_bin_len: int,
                 max_array_len: int, max_map_len: int) -> None:
        self._data = data
        self._u = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            max_buffer_size=max(len(data), 1),
            max_str_len=max_str_len,
            max_bin_len=max_bin_len,
            max_array_len=max_array_len,
            max_map_len=max_map_len,
            max_ext_len=0,
        )
        self._u.feed(data)

    def _next_byte(self) -> int:
        pos: int = self._u.tell()
        if pos >= len(self._data):
            raise msgpack.OutOfData()
        return self._data[pos]

    def scalar(self, what: str) -> Any:
        if self._next_byte() in _CONTAINER_BYTES:
            raise _shape(f"{what} must not be a list or a map")
        return self._u.unpack()

    def array(self, max_len: int, what: str) -> int:
        if self._next_byte() not in _ARRAY_BYTES:
            raise _shape(f"{what} must be a list")
        n: int = self._u.read_array_header()
        if n > max_len:
            raise _shape(f"{what} must have at most {max_len} items")
        return n

    def map(self, max_len: int, what: str) -> int:
        if self._next_byte() not in _MAP_BYTES:
            raise _shape(f"{what} must be a map")
        n: int = self._u.read_map_header()
        if n > max_len:
            raise _shape(f"{what} must have at most {max_len} keys")
        return n

    def frame_map(self, max_keys: int) -> int:
        """The header of the frame's top-level map (garbage raises MSGPACK
        here; anything else that is not a map is a shape error)."""
        if self._next_byte() not in _MAP_BYTES:
            self._u.skip()
            raise _shape("frame must be a map")
        return self.map(max_keys, "frame")

    def frame_key(self, seen: dict[str, Any]) -> str:
        key = self.scalar("frame key")
        if type(key) is not str or key in seen:
            raise _shape("frame keys must be distinct strings")
        return key

    def skip(self) -> None:
        """Pass over a value without building it (a newer peer's field)."""
        self._u.skip()

    def check_end(self) -> None:
        if self._u.tell() != len(self._data):
            raise FrameError(FrameErrorReason.MSGPACK, "trailing bytes")


class _Reader(BoundedReader):
    """Reads one gossip frame map: known list fields are checked as they are
    read, values under unknown keys are skipped without being built."""

    __slots__ = ()

    def __init__(self, data: bytes, max_size: int) -> None:
        super().__init__(data, max_str_len=MAX_TEXT_BYTES, max_bin_len=max_size,
                         max_array_len=MAX_STATES, max_map_len=MAX_FRAME_KEYS)

    def updates(self) -> list[dict[Any, Any]]:
        out = []
        for _ in range(self.array(MAX_UPDATES, "field 'u'")):
            update = {}
            for _ in range(self.map(MAX_UPDATE_KEYS, "update")):
                key = self.scalar("update key")
                update[key] = self.scalar("update field")
            out.append(update)
        return out

    def states(self) -> list[list[Any]]:
        rows = []
        for _ in range(self.array(MAX_STATES, "field 'm'")):
            if self.array(_STATE_ROW, "member state") != _STATE_ROW:
                raise _shape(f"member state must be a {_STATE_ROW}-item list")
            rows.append([self.scalar("member state item") for _ in range(_STATE_ROW)])
        return rows

    def body(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for _ in range(self.frame_map(MAX_FRAME_KEYS)):
            key = self.frame_key(obj)
            if key == "u":
                obj[key] = self.updates()
            elif key == "m":
                obj[key] = self.states()
            elif key in _KNOWN_KEYS:
                obj[key] = self.scalar(f"field {key!r}")
                if key == "t":
                    self._check_packet_size(obj[key])
            else:
                self.skip()  # a newer peer's field: not ours to build
        self.check_end()
        return obj

    def _check_packet_size(self, frame_type: Any) -> None:
        # A packet is small by construction (a ping with piggybacked
        # updates); only push-pull and user frames may use the full size.
        if (frame_type in _LAYOUTS and frame_type not in STREAM_TYPES
                and len(self._data) > MAX_PACKET_SIZE):
            raise FrameError(FrameErrorReason.TOO_LARGE,
                             f"{frame_type} frames are limited to {MAX_PACKET_SIZE} bytes")


def _read_body(data: bytes, max_size: int) -> dict[str, Any]:
    try:
        return _Reader(data, max_size).body()
    except FrameError:
        raise
    except Exception as exc:  # untrusted input: any failure is one error
        raise FrameError(FrameErrorReason.MSGPACK, type(exc).__name__) from None
