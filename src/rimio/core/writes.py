"""Pure types of the local write sequence: preconditions and commit outcomes.

They describe what a write asks for and what became of it, independent of
where the write is stored, so the API layer (which builds a `Precondition`
from request headers), the coordinator and the storage engine share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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
