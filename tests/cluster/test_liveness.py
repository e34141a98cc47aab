"""Which members requests are sent to: one rule, on the status type."""

from __future__ import annotations

import trio

from rimio.cluster.membership import MembershipService
from rimio.config import ClusterConfig
from rimio.core.frames import Status
from rimio.ops.liveness import EveryoneReachable, Liveness
from rimio.testing import MemoryTransport


def test_alive_and_suspect_members_count_as_alive() -> None:
    assert {s for s in Status if s.counts_as_alive} == {Status.ALIVE, Status.SUSPECT}


async def test_membership_answers_liveness_for_itself_and_for_strangers() -> None:
    transport = MemoryTransport("10.0.0.1:7000", lambda address: None)
    swim = ClusterConfig(name="c", nodes=()).swim_config()
    membership: Liveness = MembershipService(swim, "me", "10.0.0.1:7000", transport)
    assert membership.is_reachable("me")
    assert membership.is_reachable("never-heard-of")  # try it: the transport will tell
    assert EveryoneReachable().is_reachable("anyone")
    await trio.lowlevel.checkpoint()
