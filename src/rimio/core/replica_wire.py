"""The msgpack body of `POST /internal/v1/slots/{slot}/heads` (RFC 0011 §5):
a head offered to a replica, with its parts or its inline bytes and the
write result to record.

Declared once as a `rimio.core.wire` table (`OFFER`); `encode_offer` and
`decode_offer` both derive from it. Decoding is a trust boundary: whatever
the bytes, `decode_offer` returns an `Offer` or raises `BadRequest` that says
what is wrong. Bounds: msgpack's own length limits (strings, bytes, lists,
maps) are set from the caller's limits before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from rimio.core import wire
from rimio.core.errors import BadRequest
from rimio.core.head import Head
from rimio.core.replica import PartInfo

# A write result is a small flat map (path, generation, etag, ...).
MAX_RESULT_KEYS: Final = 32
MAX_RESULT_KEY_LEN: Final = 64
# Strings: a path is at most 1024 bytes (4096 characters of JSON escape room);
# nothing else in an offer is longer.
MAX_TEXT: Final = 4096


@dataclass(frozen=True, slots=True)
class Offer:
    """A head offered to a replica: `parts` uploaded before it, or `inline`
    (the whole object, for one that lives in its row); `write_result` to
    record for the head's write id."""

    head: Head
    parts: tuple[PartInfo, ...] = ()
    inline: bytes | None = None
    write_result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HeadCodec(wire.Codec[Head]):
    """A head in its RFC 0001 map form, parsed by `Head.from_dict`."""

    def encode(self, value: Head) -> Any:
        return value.to_dict()

    def decode(self, raw: Any, key: str) -> Head:
        if type(raw) is not dict:
            raise wire.WireShapeError(f"field {key!r} must be a head map")
        try:
            return Head.from_dict(raw)
        except ValueError as exc:  # MalformedHead
            raise wire.WireShapeError(f"field {key!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Maybe(wire.Codec[Any]):
    """`inner`, or nil for None."""

    inner: wire.Codec[Any]

    def encode(self, value: Any) -> Any:
        return None if value is None else self.inner.encode(value)

    def decode(self, raw: Any, key: str) -> Any:
        return None if raw is None else self.inner.decode(raw, key)


@dataclass(frozen=True, slots=True)
class ResultMap(wire.Codec[dict[str, Any]]):
    """A flat map of short string keys to JSON scalars (what a write result is)."""

    def decode(self, raw: Any, key: str) -> dict[str, Any]:
        if type(raw) is not dict or len(raw) > MAX_RESULT_KEYS:
            raise wire.WireShapeError(f"field {key!r} must be a map of at most "
                                      f"{MAX_RESULT_KEYS} entries")
        out: dict[str, Any] = {}
        for k, v in raw.items():
            if type(k) is not str or len(k) > MAX_RESULT_KEY_LEN:
                raise wire.WireShapeError(f"field {key!r}: keys are short strings")
            if v is not None and type(v) not in (str, int, float, bool):
                raise wire.WireShapeError(f"field {key!r}: {k!r} is not a scalar")
            if type(v) is int and not -wire.MAX_UINT <= v <= wire.MAX_UINT:
                raise wire.WireShapeError(f"field {key!r}: {k!r} is out of range")
            out[k] = v
        return out


@dataclass(frozen=True, slots=True)
class Sha256(wire.Codec[str]):
    """A SHA-256 in lower-case hex."""

    def decode(self, raw: Any, key: str) -> str:
        text = wire.Text(64).decode(raw, key)
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise wire.WireShapeError(f"field {key!r} must be a SHA-256 in hex")
        return text


PART: Final = wire.Layout(PartInfo, (
    wire.WireField("index", "i", wire.UInt()),
    wire.WireField("sha256", "sha256", Sha256()),
    wire.WireField("size_bytes", "size", wire.UInt()),
), what="part", as_row=True)


def offer_layout(max_parts: int) -> wire.Layout[Offer]:
    """The table of an offer of at most `max_parts` parts."""
    return wire.Layout(Offer, (
        wire.WireField("head", "head", HeadCodec()),
        wire.WireField("parts", "parts", wire.ListOf(PART, max_parts)),
        wire.WireField("inline", "inline", Maybe(wire.Blob())),
        wire.WireField("write_result", "result", Maybe(ResultMap())),
    ), what="head offer")


def encode_offer(offer: Offer) -> bytes:
    body = offer_layout(len(offer.parts)).encode(offer)
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def decode_offer(data: bytes, *, max_parts: int, max_inline: int) -> Offer:
    """Parse an offer from untrusted bytes; BadRequest on any defect."""
    try:
        raw = msgpack.unpackb(
            data, raw=False, strict_map_key=True,
            max_str_len=MAX_TEXT, max_bin_len=max_inline, max_array_len=max(max_parts, 16),
            max_map_len=MAX_RESULT_KEYS, max_ext_len=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise BadRequest(f"the head offer is not one msgpack object within bounds ({exc})"
                         ) from None
    if not isinstance(raw, Mapping):
        raise BadRequest("the head offer must be a map")
    try:
        return offer_layout(max_parts).decode(raw, "offer")
    except wire.WireShapeError as exc:
        raise BadRequest(f"malformed head offer: {exc}") from None
