"""What the SWIM state machine asks its I/O shell to do.

`Member` never performs I/O: each call returns a list of these values, in the
order the shell should carry them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from rimio.core.frames import Frame, Status

# (kind, ident): e.g. ("probe", ""), ("ack", "17"), ("suspicion", "node-3").
TimerKey: TypeAlias = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Send:
    """Encode `frame` and send it to the address `to`.

    `stream` is True for push-pull frames: they may be large and belong on the
    stream endpoint (request/response); everything else is a small packet.
    `node` is the member expected at `to` (signed requests name it), or None
    for a seed whose id is not known yet.
    """

    to: str
    frame: Frame
    stream: bool = False
    node: str | None = None


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `handle_timer(now, key)` once the clock reaches `at`.

    Setting a key again supersedes the earlier deadline. The machine ignores
    timers that are stale or early, so a shell may keep every deadline it was
    given and fire them all; it never has to cancel one.
    """

    at: float
    key: TimerKey


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """This node's view of a member changed (new, status, incarnation or address)."""

    node_id: str
    address: str
    status: Status
    incarnation: int


@dataclass(frozen=True, slots=True)
class UserMessage:
    """An application payload arrived in a `user` frame."""

    source: str
    kind: str
    payload: bytes


Action: TypeAlias = Send | SetTimer | MemberChanged | UserMessage
