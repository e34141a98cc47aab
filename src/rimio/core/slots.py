"""Slot hashing: which slot a path belongs to (RFC 0003 §3)."""

from __future__ import annotations

import hashlib

DEFAULT_TOTAL_SLOTS = 2048


def slot_for_path(path: str, total_slots: int) -> int:
    """`int.from_bytes(sha256(path)[:8], "big") % total_slots`, exactly."""
    if total_slots <= 0:
        raise ValueError("total_slots must be positive")
    digest = hashlib.sha256(path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total_slots
