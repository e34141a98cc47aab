"""`Range: bytes=...` parsing per RFC 9110 §14.

Only single byte ranges are served. A header that is not valid byte-range
syntax, names another unit, or asks for several ranges is ignored (the whole
object is sent with 200), as RFC 9110 allows. A syntactically valid range
that selects no byte of the object is unsatisfiable (416).
"""

from __future__ import annotations

from dataclasses import dataclass

from rimio.core.errors import RangeNotSatisfiable

_MAX_DIGITS = 19  # anything longer cannot be a real offset; ignore the header


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive byte range `[start, end]` of an object of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def _digits(text: str) -> int | None:
    text = text.strip(" \t")
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Return the requested range, None to serve the whole object, or raise 416."""
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None  # multiple ranges: not served, the whole object goes out
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    if first.strip() == "":
        suffix = _digits(last)
        if suffix is None:
            return None
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("range selects no bytes", size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = _digits(first)
    if start is None:
        return None
    if last.strip() == "":
        end = size - 1
    else:
        parsed_end = _digits(last)
        if parsed_end is None or parsed_end < start:
            return None
        end = min(parsed_end, size - 1)
    if start >= size:
        raise RangeNotSatisfiable("range starts beyond the end of the object", size)
    return ByteRange(start, end, size)
