"""A PUT or DELETE coordinated over a slot's replicas (RFC 0011 §7.1).

The sequence: refuse at once when the reachable write-set members cannot
acknowledge a write; poll the read set's heads (with the write id) until a
read quorum answered; replay a recorded result, check the precondition
against the winning head, and take `generation = 1 + max`; get the content
to the replicas (inline in the apply for a small object, parts streamed by
`part_upload` for a large one); abort everywhere and answer QuorumLost when
the replicas holding every part cannot acknowledge; apply the head in
parallel and answer once acknowledged, or OutcomeUnknown when some replica
may have applied a head that too few did.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from rimio.core.errors import NotFound, OutcomeUnknown, PreconditionFailed, QuorumLost
from rimio.core.head import Head
from rimio.core.parts import part_count
from rimio.core.quorum import SlotPlan
from rimio.core.replica import PartInfo, StaleLayout
from rimio.core.writes import Precondition
from rimio.ops.coordination import Coordination, ask_all, log
from rimio.ops.part_upload import PartUpload
from rimio.ops.quorum_heads import HeadPoll, poll_heads
from rimio.ops.results import (
    WriteOutcome,
    client_view,
    delete_result,
    put_result,
    replayed,
)

Body = bytes | AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One coordinated write. `content` None is a delete (a tombstone)."""

    slot: int
    path: str
    content: Body | None
    write_id: str | None = None
    precondition: Precondition | None = None

    @property
    def operation(self) -> str:
        return "delete" if self.content is None else "put"


@dataclass(slots=True)
class _Applies:
    """What the replicas answered to a head."""

    applied: set[str] = field(default_factory=set)
    superseded: set[str] = field(default_factory=set)  # a better head was there already
    uncertain: set[str] = field(default_factory=set)  # failed: may or may not have applied
    stale: set[str] = field(default_factory=set)  # refused: its layout is newer

    @property
    def done(self) -> set[str]:
        # A replica holding a better head acknowledges ours as written and
        # overwritten, as a single node answers a superseded write.
        return self.applied | self.superseded


def _write_quorum(plan: SlotPlan) -> int:
    return max(1, min(plan.write_quorum, len(plan.targets)))


def check_writable(ctx: Coordination, plan: SlotPlan) -> list[str]:
    """The reachable write-set members; QuorumLost at once when they cannot
    acknowledge a write (members known dead are not waited for)."""
    reachable = ctx.reachable(plan.write_set)
    if not plan.write_possible(reachable):
        down = [n for n in plan.write_set if n not in reachable]
        raise QuorumLost(f"slot {plan.slot}: a write needs {_write_quorum(plan)} replicas of "
                         f"{', '.join(plan.write_set)}; {', '.join(down)} down")
    return reachable


async def coordinated_write(ctx: Coordination, req: WriteRequest) -> WriteOutcome:
    plan = ctx.plan_for(req.slot)
    reachable = check_writable(ctx, plan)
    poll = await poll_heads(ctx, plan, req.path, req.write_id)
    if not poll.quorum_reached:
        raise QuorumLost(f"slot {plan.slot}: {len(poll.answers)} of {len(plan.read_set)} "
                         f"replicas answered, a write needs {plan.read_quorum}")
    recorded = poll.recorded_result()
    if recorded is not None:
        return replayed(recorded, req.operation)
    refusal = _refusal(req, poll)
    if refusal is not None:
        return refusal
    generation = poll.max_generation + 1
    write = _Write(ctx, plan, req, generation)
    return await write.run(reachable)


def _refusal(req: WriteRequest, poll: HeadPoll) -> WriteOutcome | None:
    """The answer when the precondition fails against the quorum's winner."""
    current = poll.winner
    if req.precondition is None or req.precondition.holds(current):
        return None
    if req.operation == "delete":
        if current is None:
            raise NotFound(f"{req.path} does not exist")
        # Already deleted: the same answer as the delete that did it.
        return WriteOutcome(client_view(delete_result(current, len(poll.holders_of(current)))),
                            replay=False)
    raise PreconditionFailed("the object does not match the request's precondition")


class _Write:
    def __init__(self, ctx: Coordination, plan: SlotPlan, req: WriteRequest,
                 generation: int) -> None:
        self._ctx = ctx
        self._plan = plan
        self._req = req
        self._generation = generation
        self._result_for: Callable[[Head, int], dict[str, Any]] = (
            delete_result if req.content is None else put_result)

    def _head(self, size: int = 0, etag: str = "") -> Head:
        req = self._req
        now = self._ctx.wall_clock()
        if req.content is None:
            return Head(kind="tombstone", path=req.path, slot_id=req.slot,
                        generation=self._generation, write_id=req.write_id or "",
                        timestamp=now)
        part_size = self._ctx.settings.part_size
        return Head(kind="meta", path=req.path, slot_id=req.slot,
                    generation=self._generation, write_id=req.write_id or "",
                    size_bytes=size, etag=etag, part_size=part_size,
                    part_count=part_count(size, part_size), timestamp=now)

    async def run(self, reachable: list[str]) -> WriteOutcome:
        content = self._req.content
        settings = self._ctx.settings
        if content is None:
            return await self._commit(self._head(), (), None, reachable)
        if isinstance(content, bytes) and len(content) <= settings.inline_max_bytes:
            head = self._head(len(content), hashlib.sha256(content).hexdigest())
            return await self._commit(head, (), content, reachable)
        body = _one_batch(content) if isinstance(content, bytes) else content
        upload = PartUpload(self._ctx, self._plan, reachable, self._req.path, self._generation)
        try:
            uploaded = await upload.run(body)
        except BaseException:
            await self._abort(reachable)
            raise
        self._abort_later(uploaded.dropped)
        if not self._plan.write_acknowledged(uploaded.holders):
            await self._abort(reachable)
            raise QuorumLost(f"slot {self._plan.slot}: only {len(uploaded.holders)} replicas "
                             f"took every part, a write needs {_write_quorum(self._plan)}; "
                             "nothing was written")
        head = self._head(uploaded.size, uploaded.etag)
        return await self._commit(head, uploaded.parts, None, list(uploaded.holders))

    async def _commit(self, head: Head, parts: Sequence[PartInfo], inline: bytes | None,
                      nodes: list[str]) -> WriteOutcome:
        """Apply `head` on `nodes` (which hold its content) and decide the answer."""
        # The recorded result travels with the head, so a retry finds it at
        # any replica. Its count is the quorum the write needed: the real
        # count is known only once the applies answered.
        recorded = (self._result_for(head, _write_quorum(self._plan))
                    if self._req.write_id else None)
        plan = self._plan
        answers = await self._apply(plan, head, parts, inline, recorded, nodes)
        if answers.stale and not plan.write_acknowledged(answers.done):
            # A replica knows a newer layout: catch up, then apply once more
            # on the new plan's members that hold the content.
            await self._ctx.refresh_layout()
            plan = self._ctx.plan_for(self._req.slot)
            holding = set(nodes) if parts else set(plan.write_set)
            retry = [n for n in self._ctx.reachable(plan.write_set)
                     if n in holding and n not in answers.done]
            again = await self._apply(plan, head, parts, inline, recorded, retry)
            answers.applied |= again.applied
            answers.superseded |= again.superseded
            answers.uncertain |= again.uncertain | again.stale
        if plan.write_acknowledged(answers.done):
            committed = len(answers.done)
            return WriteOutcome(client_view(self._result_for(head, committed)), replay=False)
        if answers.applied or answers.uncertain:
            raise OutcomeUnknown(
                f"the write of {head.path} reached {len(answers.applied)} replicas of "
                f"{len(plan.write_set)}, fewer than the {_write_quorum(plan)} it needs, and "
                f"{len(answers.uncertain)} did not answer: it may or may not become visible; "
                "retry with the same X-Rimio-Write-Id to settle it")
        self._abort_later(nodes)
        raise QuorumLost(f"slot {plan.slot}: no replica applied the write of {head.path}")

    async def _apply(self, plan: SlotPlan, head: Head, parts: Sequence[PartInfo],
                     inline: bytes | None, recorded: dict[str, Any] | None,
                     nodes: Collection[str]) -> _Applies:
        settings = self._ctx.settings
        answers = _Applies()

        async def one(node: str) -> None:
            try:
                with trio.fail_after(settings.apply_timeout):
                    answer = await self._ctx.replica_for(node).apply_head(
                        head, parts, inline, recorded, plan.layout_version)
                (answers.applied if answer.applied else answers.superseded).add(node)
            except StaleLayout:
                answers.stale.add(node)
            except Exception as exc:
                log.info("apply of %s on %s failed: %s", head.path, node, exc)
                answers.uncertain.add(node)

        # Once acknowledged, the rest get a short while, so the count is honest.
        await ask_all(tuple(nodes), one, lambda: plan.write_acknowledged(answers.done),
                      settings.apply_grace)
        return answers

    async def _abort(self, nodes: Collection[str]) -> None:
        """Remove this write's parts from `nodes`, even while being cancelled."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._ctx.settings.cleanup_timeout):
                async with trio.open_nursery() as nursery:
                    for node in nodes:
                        nursery.start_soon(self._abort_one, node)

    async def _abort_one(self, node: str) -> None:
        try:
            await self._ctx.replica_for(node).abort(self._req.slot, self._req.path,
                                                    self._generation)
        except Exception as exc:  # its start-up recovery removes them otherwise
            log.info("abort of %s on %s failed: %s", self._req.path, node, exc)

    def _abort_later(self, nodes: Collection[str]) -> None:
        if nodes:
            chosen = list(nodes)
            self._ctx.spawn(lambda: self._abort(chosen))


async def _one_batch(data: bytes) -> AsyncIterator[bytes]:
    yield data
