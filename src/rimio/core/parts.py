"""Part arithmetic: how an object's bytes map onto fixed-size parts."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PartSpan:
    """Bytes `[offset, offset + length)` of part `index`."""

    index: int
    offset: int
    length: int


def part_count(size: int, part_size: int) -> int:
    """Number of parts of an object; an empty object has no parts."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    return (size + part_size - 1) // part_size


def spans_for_range(start: int, end: int, part_size: int) -> list[PartSpan]:
    """Part slices covering object bytes `[start, end]` (inclusive end)."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    spans: list[PartSpan] = []
    pos = start
    while pos <= end:
        index = pos // part_size
        offset = pos - index * part_size
        length = min(part_size - offset, end - pos + 1)
        spans.append(PartSpan(index, offset, length))
        pos += length
    return spans
