"""The order in which a node walks the slots it found differing with a peer.

When a node comes back, it pulls what it missed while every peer that sees
it alive pushes to it at the same moment (RFC 0014 §5). Each side checks a
slot's group digests again just before repairing it, so a slot another side
already repaired costs two small questions. If every side walked the slots
in the same (sorted) order they would reach each slot together and move its
objects two or three times; walking them in an order of its own, a
pseudo-random permutation fixed by the node's id, each side mostly reaches
slots the others have not, and the work is shared instead of repeated.
Deterministic (no random source), so simulated runs replay exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def visit_order(node_id: str, slots: Iterable[int]) -> list[int]:
    """`slots` in `node_id`'s own order: the same for the same node, different
    (unrelated) for different nodes."""
    def key(slot: int) -> bytes:
        return hashlib.blake2b(f"{node_id}\x00{slot}".encode(), digest_size=8).digest()

    return sorted(slots, key=key)
