"""A GET or HEAD coordinated over a slot's replicas (RFC 0011 §7.2).

`find_winner` polls the read set's heads, takes the winner by head
order once a read quorum answered (or the best head found, marked
`degraded`, when fewer did) and names the replicas that hold it, this node
first. `read_coordinated` streams a byte range of the winner part by part,
falling back to the next holder for a part a replica lacks or cannot serve
(missing, unreachable, a corrupt or unreadable part file) before its first
byte; after it, the response breaks (a short body, never wrong bytes: every
part is checked against its sha256 before its last chunk leaves the replica,
rfcs/0013). Replicas seen behind the winner are handed to read repair, and
a holder whose part failed its check or is missing gets that part again
(`Coordination.part_lost`, rfcs/0017).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from rimio.core.errors import DiskError, PartCorrupt, QuorumLost, StorageCorrupt
from rimio.core.head import Head
from rimio.core.parts import spans_for_range
from rimio.core.replica import PartMissing, ReplicaUnavailable
from rimio.ops.coordination import Coordination, log
from rimio.ops.quorum_heads import poll_heads


@dataclass(frozen=True, slots=True)
class CoordinatedObject:
    """The winning head of a coordinated read and where its bytes are."""

    head: Head
    holders: tuple[str, ...]  # replicas that answered with exactly `head`, best first
    degraded: bool  # fewer than a read quorum answered: the newest write may be missing
    behind: tuple[str, ...] = ()  # replicas that answered with an older head (or none)


async def find_winner(ctx: Coordination, slot: int, path: str) -> CoordinatedObject | None:
    """The winning head of `path` by a read quorum (tombstones included;
    None: no replica of a read quorum has the path). Below a quorum, the best
    head found, marked degraded; QuorumLost when none was found."""
    plan = ctx.plan_for(slot)
    poll = await poll_heads(ctx, plan, path)
    if not poll.answers:
        raise QuorumLost(f"slot {slot}: none of {', '.join(plan.read_set)} answered")
    head = poll.winner
    if head is None:
        if not poll.quorum_reached:
            # Nothing found by too few: the path may well exist elsewhere.
            raise QuorumLost(f"slot {slot}: {len(poll.answers)} of {len(plan.read_set)} "
                             f"replicas answered, none has {path}; a read needs "
                             f"{plan.read_quorum} to say it does not exist")
        return None
    return CoordinatedObject(head, poll.holders_of(head), not poll.quorum_reached,
                             poll.behind(head))


async def read_coordinated(ctx: Coordination, obj: CoordinatedObject, start: int,
                           end: int) -> AsyncIterator[bytes]:
    """Bytes `[start, end]` (inclusive) of the object `obj` names."""
    head = obj.head
    for span in spans_for_range(start, end, head.part_size):
        served = False
        lost: list[BaseException] = []  # why each holder could not serve the part
        for node in obj.holders:
            sent_any = False
            try:
                chunks = ctx.replica_for(node).read_part(head, span.index, span.offset,
                                                         span.offset + span.length)
                async for chunk in chunks:
                    sent_any = True
                    yield chunk
                served = True
                break
            except (PartMissing, ReplicaUnavailable, StorageCorrupt, DiskError) as exc:
                if isinstance(exc, (PartCorrupt, PartMissing)):
                    # Its copy failed the check (quarantined there) or is gone:
                    # fetch it there again from the other holders.
                    ctx.part_lost(node, head, span.index, obj.holders)
                lost.append(exc)
                if sent_any:
                    raise  # bytes of this part went out already: the response breaks
                log.info("part %d of %s from %s: %s; trying the next holder",
                         span.index, head.path, node, exc)
        if not served and any(isinstance(e, PartCorrupt) for e in lost) and all(
                isinstance(e, (PartCorrupt, PartMissing)) for e in lost):
            # No good copy is left anywhere (R = 1, or every copy is bad):
            # that is what the client is told, not an outage to wait out.
            raise PartCorrupt(f"{head.path}: part {span.index} failed its sha256 check on "
                              f"every replica that holds it")
        if not served:
            raise QuorumLost(f"no replica holding {head.path} generation {head.generation} "
                             f"could serve its part {span.index}")


async def read_whole(ctx: Coordination, obj: CoordinatedObject) -> bytes:
    """The whole object in memory (for objects small enough to hold)."""
    if obj.head.size_bytes == 0:
        return b""
    return b"".join([c async for c in read_coordinated(ctx, obj, 0, obj.head.size_bytes - 1)])
