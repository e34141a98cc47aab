"""Asking a slot's read set for a path's heads, in parallel, until a read quorum answered.

Both the write path (generation, replay, precondition) and the read path
(winner, holders, read repair) start here. Members the failure detector holds
dead are not asked. Once a read quorum answered, the rest get a short grace
and are then not waited for; below a quorum the poll waits for every member
asked (each bounded by `head_timeout`) and reports what it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from rimio.core.head import Head, order_key, winner
from rimio.core.quorum import SlotPlan
from rimio.core.replica import HeadAnswer
from rimio.ops.coordination import Coordination, ask_all, log


@dataclass(frozen=True, slots=True)
class HeadPoll:
    """What a read set answered about one path."""

    plan: SlotPlan
    asked: tuple[str, ...]  # reachable members of the read set, in the order tried
    answers: dict[str, HeadAnswer]  # member → its answer (only those that answered)

    @property
    def quorum_reached(self) -> bool:
        return len(self.answers) >= self.plan.read_quorum

    @property
    def winner(self) -> Head | None:
        return winner([a.head for a in self.answers.values() if a.head is not None])

    @property
    def max_generation(self) -> int:
        return max((a.head.generation for a in self.answers.values() if a.head is not None),
                   default=0)

    def recorded_result(self) -> dict[str, Any] | None:
        """The write result some replica recorded for the write id asked about."""
        for node in self.asked:
            answer = self.answers.get(node)
            if answer is not None and answer.write_result is not None:
                return answer.write_result
        return None

    def holders_of(self, head: Head) -> tuple[str, ...]:
        """The members that answered with exactly `head`, in the order asked."""
        return tuple(n for n in self.asked
                     if (a := self.answers.get(n)) is not None and a.head is not None
                     and a.head.sha256 == head.sha256)

    def behind(self, head: Head) -> tuple[str, ...]:
        """The members that answered with a head `head` beats (or none at all)."""
        key = order_key(head)
        return tuple(n for n in self.asked
                     if (a := self.answers.get(n)) is not None
                     and (a.head is None or order_key(a.head) < key))


async def poll_heads(ctx: Coordination, plan: SlotPlan, path: str,
                     write_id: str | None = None) -> HeadPoll:
    settings = ctx.settings
    asked = tuple(ctx.local_first(ctx.reachable(plan.read_set)))
    answers: dict[str, HeadAnswer] = {}

    async def ask(node: str) -> None:
        try:
            with trio.move_on_after(settings.head_timeout):
                answers[node] = await ctx.replica_for(node).get_head(plan.slot, path, write_id)
        except Exception as exc:  # a replica that fails is a replica that did not answer
            log.info("head of %s from %s failed: %s", path, node, exc)

    await ask_all(asked, ask, lambda: len(answers) >= plan.read_quorum, settings.head_grace)
    return HeadPoll(plan, asked, dict(answers))
