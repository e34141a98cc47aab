"""SWIM + Lifeguard membership as a sans-IO state machine.

Modules, one job each: `config` (knobs), `actions` (what the shell must do),
`table` (lattice merge of member records), `dissemination` (piggyback
queue), `awareness` (local health score), `suspicion` (dynamic timeout),
`probing` (round-robin order), `stats` (counters), `machine` (`Member`).
"""

from rimio.core.frames import Status
from rimio.core.swim.actions import Action, MemberChanged, Send, SetTimer, TimerKey, UserMessage
from rimio.core.swim.config import SwimConfig
from rimio.core.swim.machine import Member, MemberView
from rimio.core.swim.stats import SwimStats

__all__ = [
    "Action",
    "Member",
    "MemberChanged",
    "MemberView",
    "Send",
    "SetTimer",
    "Status",
    "SwimConfig",
    "SwimStats",
    "TimerKey",
    "UserMessage",
]
