"""What a replica accepts as an offered head (RFC 0011 §5): the head must be
consistent with the parts or the inline bytes it comes with.

Pure checks, run before anything is stored: a head whose parts do not add up
to its size, are not cut at its part size, or whose inline bytes do not hash
to its etag would make a replica serve something that was never written.
Each defect raises `BadRequest` with a message that names it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from rimio.core.errors import BadRequest
from rimio.core.head import Head
from rimio.core.paths import normalize_path
from rimio.core.replica import PartInfo
from rimio.core.slots import slot_for_path

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Generations, part indexes and sizes above this are refused: far beyond any
# real one, and inside SQLite's 64-bit integers whatever is added to them.
MAX_COUNT = 1 << 62


def is_sha256(text: str) -> bool:
    return _SHA256.fullmatch(text) is not None


def part_count_for(size: int, part_size: int) -> int:
    """How many parts an object of `size` bytes is cut into."""
    return 0 if size == 0 else -(-size // part_size)


def check_path(path: str, slot: int, total_slots: int) -> None:
    """`path` must be a normalised blob path that hashes to `slot`."""
    if normalize_path(path) != path:
        raise BadRequest("the path is not in its normal form")
    if not 0 <= slot < total_slots:
        raise BadRequest(f"slot {slot} is out of range")
    if slot_for_path(path, total_slots) != slot:
        raise BadRequest(f"{path!r} is not in slot {slot}")


def check_offer(head: Head, parts: Sequence[PartInfo], inline: bytes | None, *,
                total_slots: int) -> None:
    """Raise BadRequest unless `head` with `parts` (or `inline`) is a whole,
    consistent generation of its path."""
    check_path(head.path, head.slot_id, total_slots)
    if not 1 <= head.generation <= MAX_COUNT:
        raise BadRequest("a head's generation is between 1 and 2^62")
    if not math.isfinite(head.timestamp):
        raise BadRequest("a head's timestamp is a finite number")
    if head.deleted:
        if parts or inline is not None:
            raise BadRequest("a tombstone carries no parts and no bytes")
        return
    if not is_sha256(head.etag):
        raise BadRequest("a head's etag is a SHA-256 in hex")
    if max(head.size_bytes, head.part_size) > MAX_COUNT:
        raise BadRequest("a head's sizes are at most 2^62")
    if head.size_bytes > 0 and head.part_size < 1:
        raise BadRequest("a head with bytes has a part size")
    expected = part_count_for(head.size_bytes, head.part_size)
    if head.part_count != expected:
        raise BadRequest(f"{head.size_bytes} bytes in parts of {head.part_size} are "
                         f"{expected} parts, not {head.part_count}")
    if inline is not None:
        if parts:
            raise BadRequest("an inline object comes without part uploads")
        if len(inline) != head.size_bytes or hashlib.sha256(inline).hexdigest() != head.etag:
            raise BadRequest("the inline bytes are not those the head names")
        return
    if len(parts) != expected:
        raise BadRequest(f"the head names {expected} parts, {len(parts)} were offered")
    for i, part in enumerate(sorted(parts, key=lambda p: p.index)):
        size = min(head.part_size, head.size_bytes - i * head.part_size)
        if part.index != i or part.size_bytes != size:
            raise BadRequest(f"part {i} must be offered with {size} bytes")
        if not is_sha256(part.sha256):
            raise BadRequest(f"part {i} has no valid SHA-256")
