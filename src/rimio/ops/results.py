"""What a write answers: the result a client sees, and the form it is recorded in.

A write result is recorded with the write's head (on this node's store, or on
every replica a coordinated write reaches), so a retry with the same write id
gets the first answer at any node. The recorded form carries the operation
that used the write id (`OPERATION`), which the client never sees. Both the
single-node path (`ops/objects`) and the coordinator (`ops/coordinator`)
answer through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rimio.core.errors import Conflict
from rimio.core.head import Head


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    result: dict[str, Any]
    replay: bool


# The key of a recorded write result that names its operation ("put" or
# "delete"): a write id is bound to the operation that first used it. It is
# kept with the result in storage and never shown to the client.
OPERATION = "operation"


def operation_of(result: dict[str, Any]) -> str:
    """The operation a recorded write result answered (results recorded
    before operations were, are told apart by their shape)."""
    recorded = result.get(OPERATION)
    if isinstance(recorded, str):
        return recorded
    return "delete" if result.get("deleted") else "put"


def put_result(head: Head, committed_replicas: int = 1) -> dict[str, Any]:
    return {"path": head.path, "slot_id": head.slot_id, "generation": head.generation,
            "etag": head.etag, "size_bytes": head.size_bytes,
            "committed_replicas": committed_replicas, OPERATION: "put"}


def delete_result(head: Head, committed_replicas: int = 1) -> dict[str, Any]:
    return {"path": head.path, "slot_id": head.slot_id, "generation": head.generation,
            "deleted": True, "committed_replicas": committed_replicas, OPERATION: "delete"}


def client_view(result: dict[str, Any]) -> dict[str, Any]:
    """A recorded result as the client sees it (without its operation)."""
    return {k: v for k, v in result.items() if k != OPERATION}


def replayed(result: dict[str, Any], operation: str) -> WriteOutcome:
    """The first answer recorded for a write id, given again to a retry of
    `operation`; Conflict when the id was used by the other operation."""
    if operation_of(result) != operation:
        raise Conflict(f"this X-Rimio-Write-Id was used by a {operation_of(result)} "
                       f"of this path; a {operation} needs a new one")
    return WriteOutcome(client_view(result), replay=True)
