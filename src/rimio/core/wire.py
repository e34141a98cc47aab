"""Declarative msgpack record codec: field codecs and record layouts.

A record type (a frozen dataclass) is described once by a `Layout`: an
ordered table of (attribute, wire key, codec). Encoding and decoding are
both derived from that table, so a wire key is never spelled twice and the
two directions cannot drift apart. The order of the table is the order of
the keys on the wire, which keeps the encoded bytes stable.

Decoding is strict: a value of the wrong msgpack type, out of bounds or
missing raises `WireShapeError` and nothing else. Callers (the frame codec)
turn that into their own public error. Unknown extra keys are ignored, so a
newer peer may add fields.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

MAX_UINT: Final = 2**63 - 1


class WireShapeError(Exception):
    """A decoded value does not have the declared shape (type, bound, presence)."""


class Codec(Generic[T]):
    """How one field's value maps to a msgpack value and back."""

    __slots__ = ()

    def encode(self, value: T) -> Any:
        return value

    def decode(self, raw: Any, key: str) -> T:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Text(Codec[str]):
    """A string of at most `max_len` characters."""

    max_len: int

    def decode(self, raw: Any, key: str) -> str:
        return _text(raw, key, self.max_len)


def _text(raw: Any, key: str, max_len: int) -> str:
    # `type(...) is` rather than isinstance: a str subclass is not wire data.
    if type(raw) is not str or len(raw) > max_len:
        raise WireShapeError(f"field {key!r} must be a string of at most {max_len} chars")
    return raw


@dataclass(frozen=True, slots=True)
class UInt(Codec[int]):
    """An integer in 0..MAX_UINT."""

    def decode(self, raw: Any, key: str) -> int:
        # msgpack booleans decode to Python bools, which `isinstance(v, int)`
        # would accept; `type(...) is int` refuses them.
        if type(raw) is not int or not 0 <= raw <= MAX_UINT:
            raise WireShapeError(f"field {key!r} must be an unsigned integer")
        return raw


@dataclass(frozen=True, slots=True)
class Bool(Codec[bool]):
    def decode(self, raw: Any, key: str) -> bool:
        if type(raw) is not bool:
            raise WireShapeError(f"field {key!r} must be a boolean")
        return raw


@dataclass(frozen=True, slots=True)
class Blob(Codec[bytes]):
    """Opaque bytes (msgpack bin); its size is bounded by the frame's."""

    def decode(self, raw: Any, key: str) -> bytes:
        if type(raw) is not bytes:
            raise WireShapeError(f"field {key!r} must be bytes")
        return raw


@dataclass(frozen=True, slots=True)
class EnumText(Codec[E]):
    """A string enum sent as its value."""

    enum_type: type[E]
    max_len: int

    def encode(self, value: E) -> Any:
        return value.value

    def decode(self, raw: Any, key: str) -> E:
        text = _text(raw, key, self.max_len)
        try:
            return self.enum_type(text)
        except ValueError:
            raise WireShapeError(f"unknown {key} {text!r}") from None


@dataclass(frozen=True, slots=True)
class ListOf(Codec[tuple[T, ...]]):
    """A list of at most `max_len` items, each through `item` (a tuple in Python)."""

    item: Codec[T]
    max_len: int

    def encode(self, value: tuple[T, ...]) -> Any:
        return [self.item.encode(v) for v in value]

    def decode(self, raw: Any, key: str) -> tuple[T, ...]:
        if type(raw) is not list or len(raw) > self.max_len:
            raise WireShapeError(f"field {key!r} must be a list of at most {self.max_len} items")
        return tuple(self.item.decode(v, key) for v in raw)


@dataclass(frozen=True, slots=True)
class WireField:
    """One row of a layout: dataclass attribute, wire key, codec."""

    attr: str
    key: str
    codec: Codec[Any]


@dataclass(frozen=True, slots=True)
class Layout(Codec[T]):
    """A record type and its ordered wire fields.

    `as_row` sends the record as a positional array instead of a map (the
    keys then only name fields in error messages): compact for long lists.
    `what` names the record in error messages.
    """

    record: type[T]
    fields: tuple[WireField, ...]
    what: str = "record"
    as_row: bool = False

    def encode(self, value: T) -> Any:
        values = [column.codec.encode(getattr(value, column.attr)) for column in self.fields]
        if self.as_row:
            return values
        return {column.key: v for column, v in zip(self.fields, values, strict=True)}

    def decode(self, raw: Any, key: str) -> T:
        """Build the record from a map (or row) found under `key`."""
        if self.as_row:
            if type(raw) is not list or len(raw) != len(self.fields):
                raise WireShapeError(f"{self.what} must be a {len(self.fields)}-item list")
            items: Sequence[Any] = raw
            values = {column.attr: column.codec.decode(v, column.key)
                      for column, v in zip(self.fields, items, strict=True)}
        else:
            if type(raw) is not dict:
                raise WireShapeError(f"{self.what} must be a map")
            mapping: Mapping[Any, Any] = raw
            values = {column.attr: column.codec.decode(mapping.get(column.key), column.key)
                      for column in self.fields}
        return self.record(**values)


@dataclass(frozen=True, slots=True)
class Tagged(Codec[Any]):
    """A union of map records told apart by a tag under `tag_key`.

    The tag is the first key on the wire, then the variant's own fields.
    """

    tag_key: str
    variants: Mapping[str, Layout[Any]]
    what: str
    _tags: dict[type, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tags = {layout.record: tag for tag, layout in self.variants.items()}
        object.__setattr__(self, "_tags", tags)

    def tag_of(self, value: Any) -> str:
        return self._tags[type(value)]

    def encode(self, value: Any) -> Any:
        tag = self.tag_of(value)
        body: dict[str, Any] = {self.tag_key: tag}
        body.update(self.variants[tag].encode(value))
        return body

    def decode(self, raw: Any, key: str) -> Any:
        if type(raw) is not dict:
            raise WireShapeError(f"{self.what} must be a map")
        tag = raw.get(self.tag_key)
        layout = self.variants.get(tag) if type(tag) is str else None
        if layout is None:
            raise WireShapeError(f"{self.what}: not a known type {tag!r}")
        return layout.decode(raw, key)
