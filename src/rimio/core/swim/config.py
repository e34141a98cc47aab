"""SWIM/Lifeguard configuration: every knob of the membership protocol.

Defaults follow hashicorp/memberlist's LAN profile (`DefaultLANConfig`), so
measurements can be set beside memberlist's, except `retransmit_mult`, which
is 6 where memberlist has 4, because 6 measured better (see the field);
`SwimConfig.memberlist_lan()` gives the exact profile. Rimio-specific additions (the
re-merge of partitioned halves, loop-lag handling, bounds) are grouped at the
end. The config is a frozen value: derive variants with `dataclasses.replace`
or the helpers below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rimio.core.frames import DEFAULT_MAX_SIZE, MAX_PACKET_SIZE


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """All parameters of `rimio.core.swim.Member`. Times are in seconds."""

    cluster: str = "rimio"

    # Failure detection (SWIM).
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3

    # Suspicion (Lifeguard dynamic timeout, memberlist formula).
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6

    # Dissemination. memberlist uses 4: 8 sends per member for N = 11-99, so
    # about N·e^-8 of the updates miss someone, and a missed refutation is a
    # false dead verdict (15 in 2 h at N = 50 and 10% loss, simulated). 6
    # measured none in the same runs (benchmarks/RESULTS.md).
    retransmit_mult: int = 6
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    # Recently dead members still receive gossip for this long, so a member
    # wrongly declared dead hears about it and refutes.
    gossip_to_the_dead_time: float = 30.0
    push_pull_interval: float = 30.0
    # While a node knows no live peer, it retries its join seeds this often.
    join_retry_interval: float = 2.0

    # Local health awareness (Lifeguard): score in [0, max_multiplier - 1].
    awareness_max_multiplier: int = 8

    # Lifeguard switches, one per mechanism, so each effect can be measured.
    awareness: bool = True
    dynamic_suspicion: bool = True
    buddy_system: bool = True

    # Byte budget of one packet (ping, ack, gossip) including piggybacked
    # updates; memberlist's UDP budget. Push-pull goes over a stream instead.
    packet_budget: int = 1400
    # Largest frame accepted from the wire (push-pull of a large table).
    max_frame_size: int = DEFAULT_MAX_SIZE
    # Members kept in the table, this node included. Beyond it, updates about
    # new names are ignored and counted (`members_refused`): a flood of
    # invented members cannot grow the table, the probe order or push-pull.
    max_members: int = 1024
    # Pending updates kept for dissemination; beyond this the most-sent are dropped.
    max_broadcast_queue: int = 1024
    # Outstanding indirect probes we relay for others; beyond this, refuse.
    max_relays: int = 256
    # A graceful leave is sent directly to this many members besides gossip.
    leave_fanout: int = 8

    # Re-merge after a partition (not in memberlist): every
    # `reconnect_interval` push-pull with the last address of one member that
    # has been dead for less than `reconnect_period`.
    reconnect_interval: float = 30.0
    reconnect_period: float = 6 * 3600.0
    # Dead and left members are forgotten after this long.
    tombstone_ttl: float = 24 * 3600.0

    # Event-loop lag (Python's usual "slow member"): a reported lag, or a timer
    # that fires this much late, counts against our own health score.
    loop_lag_threshold: float = 0.25
    detect_late_timers: bool = True

    def __post_init__(self) -> None:
        positive = ["probe_interval", "probe_timeout", "gossip_interval", "push_pull_interval",
                    "join_retry_interval", "reconnect_interval", "loop_lag_threshold"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.probe_timeout > self.probe_interval:
            raise ValueError("probe_timeout must not exceed probe_interval")
        if self.awareness_max_multiplier < 1 or self.suspicion_mult < 1:
            raise ValueError("multipliers must be >= 1")
        if self.suspicion_max_timeout_mult < 1 or self.retransmit_mult < 1:
            raise ValueError("multipliers must be >= 1")
        if self.indirect_checks < 0 or self.gossip_nodes < 1:
            raise ValueError("indirect_checks must be >= 0 and gossip_nodes >= 1")
        if not 256 <= self.packet_budget <= MAX_PACKET_SIZE:
            raise ValueError(f"packet_budget must be between 256 and {MAX_PACKET_SIZE} bytes")
        if self.max_members < 2:
            raise ValueError("max_members must be >= 2")

    @classmethod
    def memberlist_lan(cls, cluster: str = "rimio") -> SwimConfig:
        """hashicorp/memberlist's LAN profile exactly (the defaults differ only
        in `retransmit_mult`); the measurements use it as their anchor."""
        return cls(cluster=cluster, retransmit_mult=4)

    def plain_swim(self) -> SwimConfig:
        """This config with all three Lifeguard mechanisms switched off."""
        return dataclasses.replace(self, awareness=False, dynamic_suspicion=False,
                                   buddy_system=False)
