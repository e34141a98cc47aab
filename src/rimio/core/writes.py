"""Pure types of the local write sequence: preconditions, checks and outcomes.

They describe what a write asks for, what it found, and what became of it,
independent of where the write is stored, so the API layer (which builds a
`Precondition` from request headers), the coordinator and the storage engine
share them. `WriteCheck.refusal` is the one place that decides whether a
write may go ahead; storage runs it before anything is written and again
inside the transaction that commits the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from rimio.core.head import Head


class CommitOutcome(Enum):
    APPLIED = "applied"  # the head is now the winner
    SUPERSEDED = "superseded"  # a better head was already there; nothing changed
    REPLAY = "replay"  # the write id was already answered
    PRECONDITION_FAILED = "precondition_failed"


@dataclass(frozen=True, slots=True)
class Precondition:
    """What the current winner must look like for a write to go ahead."""

    if_match: tuple[str, ...] | None = None  # etags, or ("*",)
    if_none_match_any: bool = False  # `If-None-Match: *`

    def holds(self, current: Head | None) -> bool:
        live = current is not None and not current.deleted
        if self.if_none_match_any and live:
            return False
        if self.if_match is not None:
            if not live or current is None:
                return False
            if "*" not in self.if_match and current.etag not in self.if_match:
                return False
        return True


# A live object must be there: what a DELETE asks of the current head.
MUST_EXIST = Precondition(if_match=("*",))


@dataclass(frozen=True, slots=True)
class WriteCheck:
    """What a write finds for its path: the current head, and the answer
    already recorded for its write id (None when there is none)."""

    current: Head | None
    first_result: dict[str, Any] | None = None

    def refusal(self, precondition: Precondition | None) -> CommitOutcome | None:
        """Why the write must not go ahead, or None when it may.

        A recorded answer wins over the precondition: a retried write gets its
        first answer even if the object has changed since.
        """
        if self.first_result is not None:
            return CommitOutcome.REPLAY
        if precondition is not None and not precondition.holds(self.current):
            return CommitOutcome.PRECONDITION_FAILED
        return None


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What became of one write on one node.

    `result` is the answer to give: this write's own (APPLIED, SUPERSEDED),
    the first one recorded for the write id (REPLAY), or None
    (PRECONDITION_FAILED). `current` is the head that failed the
    precondition, so a caller can tell "missing" from "deleted".
    """

    outcome: CommitOutcome
    result: dict[str, Any] | None
    current: Head | None = None

    @classmethod
    def refused(cls, outcome: CommitOutcome, check: WriteCheck) -> WriteReport:
        if outcome is CommitOutcome.REPLAY:
            return cls(outcome, check.first_result, check.current)
        return cls(outcome, None, check.current)
