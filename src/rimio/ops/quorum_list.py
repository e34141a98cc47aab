"""LIST over replicated slots (RFC 0011 §7.3): every reachable node's heads.

Each reachable node that holds slots is asked once for its current heads
across all its slots (`list_heads(slot=None)`), in parallel; the caller
merges them by head order (`core/listing.merge_listings`). The listing is
complete only if, for every slot, a read quorum of its read set answered:
any such set holds every acknowledged write. Otherwise QuorumLost — checked
first against liveness (nobody is asked when the answer is known), then
against who actually answered.
"""

from __future__ import annotations

import trio

from rimio.core.errors import QuorumLost
from rimio.core.head import Head
from rimio.core.quorum import SlotPlan
from rimio.ops.coordination import Coordination, log


def _short_slot(plans: list[SlotPlan], answering: set[str]) -> SlotPlan | None:
    """A slot whose read set has fewer members in `answering` than its read quorum."""
    for plan in plans:
        if sum(1 for n in plan.read_set if n in answering) < plan.read_quorum:
            return plan
    return None


async def gather_listings(ctx: Coordination, prefix: str, after: str | None,
                          fetch: int) -> list[list[Head]]:
    plans = [ctx.plan_for(slot) for slot in range(ctx.total_slots)]
    nodes = sorted({n for plan in plans for n in plan.read_set})
    reachable = set(ctx.reachable(nodes))
    short = _short_slot(plans, reachable)
    if short is not None:
        raise QuorumLost(f"listing needs {short.read_quorum} of {', '.join(short.read_set)} "
                         f"(slot {short.slot}); too many are down")
    sources: dict[str, list[Head]] = {}
    failures: dict[str, str] = {}

    async def ask(node: str) -> None:
        try:
            with trio.move_on_after(ctx.settings.head_timeout):
                sources[node] = await ctx.replica_for(node).list_heads(None, prefix, after,
                                                                       fetch)
                return
            failures[node] = "timed out"
        except Exception as exc:
            log.info("listing from %s failed: %s", node, exc)
            failures[node] = str(exc)

    async with trio.open_nursery() as nursery:
        for node in sorted(reachable):
            nursery.start_soon(ask, node)
    short = _short_slot(plans, set(sources))
    if short is not None:
        why = "; ".join(f"{n}: {failures[n]}" for n in short.read_set if n in failures)
        raise QuorumLost(f"listing: too few of {', '.join(short.read_set)} answered "
                         f"(slot {short.slot} needs {short.read_quorum})"
                         + (f" — {why}" if why else ""))
    return [sources[n] for n in sorted(sources)]
