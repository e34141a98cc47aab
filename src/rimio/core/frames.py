"""Gossip frame codec: the msgpack wire format of the membership protocol.

This module owns the frame types (frozen, slotted dataclasses), their
encoding, and the validation of untrusted bytes. Every frame is one msgpack
map ``{"v": 1, "t": <type>, "c": <cluster name>, ...}``; the remaining keys
are short field names chosen per type.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

import msgpack

VERSION: Final = 1

# Bounds for untrusted input (DESIGN §9). Generous for an edge cluster of
# 3-100 nodes, small enough that one frame cannot make us allocate much.
MAX_ID_LEN: Final = 128
MAX_ADDR_LEN: Final = 256
MAX_CLUSTER_LEN: Final = 128
MAX_KIND_LEN: Final = 64
MAX_UPDATES: Final = 256
MAX_STATES: Final = 4096
MAX_UINT: Final = 2**63 - 1
DEFAULT_MAX_SIZE: Final = 1 << 20


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
# Encoding


def _update_body(u: Update) -> dict[str, Any]:
    body: dict[str, Any] = {"t": u.TYPE, "n": u.node, "a": u.address, "i": u.incarnation}
    if isinstance(u, Suspect | Dead):
        body["f"] = u.sender
    return body


def _state_body(s: MemberState) -> list[Any]:
    # Rows are arrays, not maps: a push-pull of 100 members stays small.
    return [s.node, s.address, s.status.value, s.incarnation]


def _body(frame: Frame) -> dict[str, Any]:
    match frame:
        case Alive() | Suspect() | Dead() | Leave():
            return _update_body(frame)
        case Ping():
            return {
                "t": frame.TYPE,
                "s": frame.seq,
                "tn": frame.target,
                "sn": frame.source,
                "sa": frame.source_address,
                "u": [_update_body(u) for u in frame.updates],
            }
        case PingReq():
            return {
                "t": frame.TYPE,
                "s": frame.seq,
                "tn": frame.target,
                "ta": frame.target_address,
                "sn": frame.source,
                "sa": frame.source_address,
                "k": frame.want_nack,
                "u": [_update_body(u) for u in frame.updates],
            }
        case Ack():
            return {
                "t": frame.TYPE,
                "s": frame.seq,
                "sn": frame.source,
                "u": [_update_body(u) for u in frame.updates],
            }
        case Nack():
            return {"t": frame.TYPE, "s": frame.seq, "sn": frame.source}
        case Gossip():
            return {
                "t": frame.TYPE,
                "sn": frame.source,
                "u": [_update_body(u) for u in frame.updates],
            }
        case PushPullRequest():
            return {
                "t": frame.TYPE,
                "s": frame.seq,
                "sn": frame.source,
                "sa": frame.source_address,
                "j": frame.join,
                "m": [_state_body(s) for s in frame.states],
            }
        case PushPullResponse():
            return {
                "t": frame.TYPE,
                "s": frame.seq,
                "sn": frame.source,
                "m": [_state_body(s) for s in frame.states],
            }
        case User():
            return {"t": frame.TYPE, "sn": frame.source, "kd": frame.kind, "p": frame.payload}


def encode(frame: Frame, *, cluster: str) -> bytes:
    """Serialize `frame` for the cluster named `cluster`."""
    body = _body(frame)
    body["v"] = VERSION
    body["c"] = cluster
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def encoded_update_size(update: Update) -> int:
    """Bytes one piggybacked update adds to a frame (for packing to a budget)."""
    return len(msgpack.packb(_update_body(update), use_bin_type=True))


# --------------------------------------------------------------------------
# Decoding: every helper raises FrameError(SHAPE) on anything unexpected.


def _shape(detail: str) -> FrameError:
    return FrameError(FrameErrorReason.SHAPE, detail)


def _str(d: Mapping[str, Any], key: str, max_len: int) -> str:
    v = d.get(key)
    if type(v) is not str or len(v) > max_len:
        raise _shape(f"field {key!r} must be a string of at most {max_len} chars")
    return v


def _uint(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    # `type(...) is int` on purpose: msgpack booleans are Python bools, which
    # `isinstance(v, int)` would accept.
    if type(v) is not int or not 0 <= v <= MAX_UINT:
        raise _shape(f"field {key!r} must be an unsigned integer")
    return v


def _bool(d: Mapping[str, Any], key: str) -> bool:
    v = d.get(key)
    if type(v) is not bool:
        raise _shape(f"field {key!r} must be a boolean")
    return v


def _list(d: Mapping[str, Any], key: str, max_len: int) -> list[Any]:
    v = d.get(key)
    if type(v) is not list or len(v) > max_len:
        raise _shape(f"field {key!r} must be a list of at most {max_len} items")
    return v


def _update(obj: Any) -> Update:
    if type(obj) is not dict:
        raise _shape("update must be a map")
    t = obj.get("t")
    if t not in _UPDATE_DECODERS:
        raise _shape(f"not an update type: {t!r}")
    return _UPDATE_DECODERS[t](obj)


def _updates(d: Mapping[str, Any]) -> tuple[Update, ...]:
    return tuple(_update(u) for u in _list(d, "u", MAX_UPDATES))


def _state(obj: Any) -> MemberState:
    if type(obj) is not list or len(obj) != 4:
        raise _shape("member state must be a 4-item list")
    node, address, status, incarnation = obj
    row = {"n": node, "a": address, "st": status, "i": incarnation}
    try:
        st = Status(_str(row, "st", 16))
    except ValueError:
        raise _shape(f"unknown status {status!r}") from None
    return MemberState(_str(row, "n", MAX_ID_LEN), _str(row, "a", MAX_ADDR_LEN), st,
                       _uint(row, "i"))


def _states(d: Mapping[str, Any]) -> tuple[MemberState, ...]:
    return tuple(_state(s) for s in _list(d, "m", MAX_STATES))


def _dec_alive(d: Mapping[str, Any]) -> Alive:
    return Alive(_str(d, "n", MAX_ID_LEN), _str(d, "a", MAX_ADDR_LEN), _uint(d, "i"))


def _dec_suspect(d: Mapping[str, Any]) -> Suspect:
    return Suspect(_str(d, "n", MAX_ID_LEN), _str(d, "a", MAX_ADDR_LEN), _uint(d, "i"),
                   _str(d, "f", MAX_ID_LEN))


def _dec_dead(d: Mapping[str, Any]) -> Dead:
    return Dead(_str(d, "n", MAX_ID_LEN), _str(d, "a", MAX_ADDR_LEN), _uint(d, "i"),
                _str(d, "f", MAX_ID_LEN))


def _dec_leave(d: Mapping[str, Any]) -> Leave:
    return Leave(_str(d, "n", MAX_ID_LEN), _str(d, "a", MAX_ADDR_LEN), _uint(d, "i"))


def _dec_ping(d: Mapping[str, Any]) -> Ping:
    return Ping(_uint(d, "s"), _str(d, "tn", MAX_ID_LEN), _str(d, "sn", MAX_ID_LEN),
                _str(d, "sa", MAX_ADDR_LEN), _updates(d))


def _dec_ping_req(d: Mapping[str, Any]) -> PingReq:
    return PingReq(_uint(d, "s"), _str(d, "tn", MAX_ID_LEN), _str(d, "ta", MAX_ADDR_LEN),
                   _str(d, "sn", MAX_ID_LEN), _str(d, "sa", MAX_ADDR_LEN), _bool(d, "k"),
                   _updates(d))


def _dec_ack(d: Mapping[str, Any]) -> Ack:
    return Ack(_uint(d, "s"), _str(d, "sn", MAX_ID_LEN), _updates(d))


def _dec_nack(d: Mapping[str, Any]) -> Nack:
    return Nack(_uint(d, "s"), _str(d, "sn", MAX_ID_LEN))


def _dec_gossip(d: Mapping[str, Any]) -> Gossip:
    return Gossip(_str(d, "sn", MAX_ID_LEN), _updates(d))


def _dec_push_pull_req(d: Mapping[str, Any]) -> PushPullRequest:
    return PushPullRequest(_uint(d, "s"), _str(d, "sn", MAX_ID_LEN),
                           _str(d, "sa", MAX_ADDR_LEN), _bool(d, "j"), _states(d))


def _dec_push_pull_resp(d: Mapping[str, Any]) -> PushPullResponse:
    return PushPullResponse(_uint(d, "s"), _str(d, "sn", MAX_ID_LEN), _states(d))


def _dec_user(d: Mapping[str, Any]) -> User:
    payload = d.get("p")
    if type(payload) is not bytes:
        raise _shape("field 'p' must be bytes")
    return User(_str(d, "sn", MAX_ID_LEN), _str(d, "kd", MAX_KIND_LEN), payload)


_UPDATE_DECODERS: Final[dict[str, Callable[[Mapping[str, Any]], Update]]] = {
    Alive.TYPE: _dec_alive,
    Suspect.TYPE: _dec_suspect,
    Dead.TYPE: _dec_dead,
    Leave.TYPE: _dec_leave,
}

_DECODERS: Final[dict[str, Callable[[Mapping[str, Any]], Frame]]] = {
    **_UPDATE_DECODERS,
    Ping.TYPE: _dec_ping,
    PingReq.TYPE: _dec_ping_req,
    Ack.TYPE: _dec_ack,
    Nack.TYPE: _dec_nack,
    Gossip.TYPE: _dec_gossip,
    PushPullRequest.TYPE: _dec_push_pull_req,
    PushPullResponse.TYPE: _dec_push_pull_resp,
    User.TYPE: _dec_user,
}

FRAME_TYPES: Final = frozenset(_DECODERS)


def decode(data: bytes, *, max_size: int, cluster: str | None = None) -> Frame:
    """Parse untrusted bytes into a frame, or raise `FrameError`.

    With `cluster` given, a frame of another cluster raises
    `FrameError(WRONG_CLUSTER)`; the check comes after version and type so a
    newer peer's frame is reported as such rather than as a stranger's.
    """
    if len(data) > max_size:
        raise FrameError(FrameErrorReason.TOO_LARGE, f"{len(data)} > {max_size} bytes")
    try:
        # The length caps make msgpack refuse oversized containers before it
        # allocates them; anything it raises means "not valid msgpack" to us.
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=MAX_STATES,
            max_map_len=64,
            max_ext_len=0,
        )
    except Exception as exc:  # untrusted input: any failure is one error
        raise FrameError(FrameErrorReason.MSGPACK, type(exc).__name__) from None
    if type(obj) is not dict:
        raise _shape("frame must be a map")
    v = obj.get("v")
    if type(v) is not int:
        raise _shape("field 'v' must be an integer")
    if v != VERSION:
        raise FrameError(FrameErrorReason.VERSION, str(v))
    t = obj.get("t")
    if type(t) is not str:
        raise _shape("field 't' must be a string")
    decoder = _DECODERS.get(t)
    if decoder is None:
        raise FrameError(FrameErrorReason.UNKNOWN_TYPE, t[:MAX_KIND_LEN])
    c = _str(obj, "c", MAX_CLUSTER_LEN)
    if cluster is not None and c != cluster:
        raise FrameError(FrameErrorReason.WRONG_CLUSTER, c)
    return decoder(obj)
