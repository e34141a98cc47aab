"""Counters kept by the SWIM machine, and their read-only snapshot."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    """Mutable counters owned by one `Member`."""

    frames_received: Counter[str] = field(default_factory=Counter)
    frames_sent: Counter[str] = field(default_factory=Counter)
    decode_errors: Counter[str] = field(default_factory=Counter)  # by FrameErrorReason
    probes: int = 0
    probe_failures: int = 0  # no ack, direct or indirect, within the period
    indirect_probes: int = 0
    nacks_received: int = 0
    missing_nacks: int = 0
    misdirected_pings: int = 0
    relays_refused: int = 0
    suspicions_started: int = 0  # by us, after a failed probe
    suspicion_confirmations: int = 0
    dead_declared: int = 0  # by us, on suspicion timeout
    refutations: int = 0  # we refuted a claim about ourselves
    address_conflicts: int = 0  # another address claims our id while not dead
    push_pulls_sent: int = 0
    reconnect_attempts: int = 0
    loop_lag_events: int = 0
    late_timers: int = 0
    tombstones_reaped: int = 0
    incarnations_refused: int = 0  # updates beyond MAX_INCARNATION, dropped
    members_refused: int = 0  # updates about new names beyond max_members
    unadvertised_addresses: int = 0  # sends refused: no member advertised the address


@dataclass(frozen=True, slots=True)
class SwimStats:
    """Snapshot of a member's counters (see `Counters`) plus gauges."""

    frames_received: dict[str, int]
    frames_sent: dict[str, int]
    decode_errors: dict[str, int]
    unknown_dropped: int
    wrong_cluster_dropped: int
    queue_drops: int
    queue_length: int
    awareness: int
    incarnation: int
    probes: int
    probe_failures: int
    indirect_probes: int
    nacks_received: int
    missing_nacks: int
    misdirected_pings: int
    relays_refused: int
    suspicions_started: int
    suspicion_confirmations: int
    dead_declared: int
    refutations: int
    address_conflicts: int
    push_pulls_sent: int
    reconnect_attempts: int
    loop_lag_events: int
    late_timers: int
    tombstones_reaped: int
    incarnations_refused: int
    members_refused: int
    unadvertised_addresses: int


def snapshot(c: Counters, *, queue_drops: int, queue_length: int, awareness: int,
             incarnation: int) -> SwimStats:
    plain = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    for name in ("frames_received", "frames_sent", "decode_errors"):
        plain[name] = dict(plain[name])
    return SwimStats(
        unknown_dropped=c.decode_errors["unknown_type"] + c.decode_errors["version"],
        wrong_cluster_dropped=c.decode_errors["wrong_cluster"],
        queue_drops=queue_drops,
        queue_length=queue_length,
        awareness=awareness,
        incarnation=incarnation,
        **plain,
    )
