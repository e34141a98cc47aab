"""Fetching one lost part again (rfcs/0017-scrub.md): the single-part re-fetch
that the scrubber and the verified-read path (`ReadRepair.refetch`) share.

A replica whose copy of part `index` of a head it holds failed its check (and
was quarantined) or is missing gets that part, and only it, from the other
holders of the same head: read part by part with fallback
(`read_coordinated` on the part's span; each source checks its own copy
against the sha256 before its last chunk leaves, rfcs/0013) and piped into
the target's `restore_part`, which checks the bytes against its own part row
before it installs them. No part hash needs to travel: each side trusts only
its own rows.
"""

from __future__ import annotations

from rimio.core.head import Head
from rimio.ops.coordination import Coordination
from rimio.ops.quorum_read import CoordinatedObject, read_coordinated


async def restore_one_part(ctx: Coordination, node: str, head: Head, index: int,
                           sources: tuple[str, ...]) -> int:
    """Put part `index` of `head` back on `node` from `sources` (other
    replicas holding exactly `head`). Returns the bytes sent. Raises what the
    read raises (QuorumLost, PartCorrupt: no source could serve the part) or
    what the target raises (PartMissing: it no longer holds `head`;
    BadRequest: the bytes did not match its row; RestoreUnsupported)."""
    others = tuple(s for s in sources if s != node)
    start = index * head.part_size
    end = min(start + head.part_size, head.size_bytes) - 1
    chunks = read_coordinated(ctx, CoordinatedObject(head, others, degraded=False), start, end)
    info = await ctx.replica_for(node).restore_part(head, index, chunks)
    return info.size_bytes
