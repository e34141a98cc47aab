"""`Liveness`: what the object service asks before sending work to a node.

The membership service answers it in a running node; a service built on its
own (tests, tools) treats every node as reachable.
"""

from __future__ import annotations

from typing import Protocol


class Liveness(Protocol):
    def is_reachable(self, node_id: str) -> bool:
        """Whether requests should be sent to `node_id` (suspects still are)."""


class EveryoneReachable:
    """Liveness without membership: every node is worth trying."""

    def is_reachable(self, node_id: str) -> bool:
        return True
