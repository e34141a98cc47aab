"""Replica placement: which nodes hold a slot (RFC 0003 §4).

Rendezvous (highest-random-weight) hashing over the cluster layout: every
node gets a score per slot, the R highest scores hold the slot. Adding or
removing one of N nodes moves about 1/N of the slots, and every node computes
the same answer from the same layout with no coordination.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache


# Scores depend on the slot and node id only: every layout of a cluster
# reuses them (2048 slots x a few nodes fit in the cache).
@lru_cache(maxsize=1 << 16)
def _score(slot: int, node_id: str) -> int:
    digest = hashlib.sha256(f"{slot}\x00{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def replicas_for_slot(slot: int, layout: Iterable[str], replicas: int) -> list[str]:
    """The node ids holding `slot`, best first; at most `replicas` of them."""
    ranked = sorted(layout, key=lambda node: (_score(slot, node), node), reverse=True)
    return ranked[:replicas]
