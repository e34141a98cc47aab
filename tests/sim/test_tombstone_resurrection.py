"""A replica partitioned away across a delete for twice the tombstone
retention, while its slots move to the others, never brings the deleted
object back (RFC 0015), in a deterministic simulation (MockClock, in-memory
network, full nodes).

Four nodes, R = 3. An object is written; one of its holders, X, is cut off;
the object is deleted through the others and an operator removes X from the
layout, so the slot moves to the three others. They purge the tombstone once
it is older than the retention (the test checks they did: otherwise there
would be nothing to resurrect). After twice the retention the partition
heals: X still holds the old object and, until it learns the layout, still
believes it holds the slot. From then on every read of the path through
every node, X included, must not return the object, and no replica of the
final layout may hold it.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import trio
import trio.testing

from rimio.config import RepairConfig
from rimio.core.slots import slot_for_path
from rimio.net.sim import LinkProfile
from rimio.testing.chaos import ChaosCluster, ChaosParams, _blob_url
from rimio.testing.determinism import seed_trio_scheduler

RETENTION = 120.0
PATH = "camera/frame-0001"


async def _scenario(base: Path) -> dict[str, object]:
    params = ChaosParams(nodes=4, spares=0, replicas=3, total_slots=16, max_skew=5.0)
    cluster = ChaosCluster(base, params, random.Random(7), LinkProfile(latency=0.001, jitter=0))
    cluster.cluster = replace(cluster.cluster, repair=RepairConfig(
        interval_seconds=10.0, tombstone_retention_seconds=RETENTION))
    seen: dict[str, object] = {"reads": []}
    async with cluster, cluster.client("checker", timeout=30.0) as http:
        await trio.sleep(3.0)
        assert cluster.converged()
        slot = slot_for_path(PATH, params.total_slots)
        holders = cluster.layout("n1").holders(slot)
        victim = holders[-1]
        others = [n for n in cluster.node_ids if n != victim]
        via = others[0]
        r = await http.put(_blob_url(cluster, via, PATH), content=b"old frame" * 500)
        assert r.status_code == 201, r.text
        await trio.sleep(12.0)  # a round: every holder has it
        assert (await cluster.hosts[victim].node.store.current_head(slot, PATH)) is not None  # type: ignore[union-attr]

        cluster.partition([victim], others)
        await trio.sleep(5.0)
        r = await http.delete(_blob_url(cluster, via, PATH))
        assert r.status_code in (200, 204), r.text
        for n in others:
            if n in holders:
                host = cluster.hosts[n].node
                assert host is not None
                head = await host.store.current_head(slot, PATH)
                assert head is not None and head.deleted, n
        node = cluster.hosts[via].node
        assert node is not None and node.layout is not None
        await node.layout.update(lambda lay: lay.remove(victim))
        await trio.sleep(2 * RETENTION)
        purged = 0
        for n in others:
            host = cluster.hosts[n].node
            assert host is not None and host.purger is not None
            purged += host.purger.stats.purged
            assert await host.store.current_head(slot, PATH) is None, n
        seen["purged"] = purged
        assert not cluster.layout(others[0]).moving(slot)
        assert victim not in cluster.layout(others[0]).holders(slot)
        stale = await cluster.hosts[victim].node.store.current_head(slot, PATH)  # type: ignore[union-attr]
        seen["victim_had_old_head"] = stale is not None and not stale.deleted

        cluster.heal()
        end = trio.current_time() + 90.0
        reads: list[tuple[float, str, int]] = []
        while trio.current_time() < end:
            for n in cluster.node_ids:
                try:
                    r = await http.get(_blob_url(cluster, n, PATH))
                    reads.append((trio.current_time(), n, r.status_code))
                except Exception:  # a node that does not answer says nothing
                    pass
            await trio.sleep(1.0)
        seen["reads"] = reads
        final = cluster.layout(others[0])
        holding = {}
        for n in final.holders(slot):
            host = cluster.hosts[n].node
            assert host is not None
            head = await host.store.current_head(slot, PATH)
            holding[n] = None if head is None else (head.generation, head.deleted)
        seen["final"] = holding
    return seen


def test_a_partitioned_replica_never_resurrects_a_purged_delete(tmp_path: Path) -> None:
    seed_trio_scheduler(7)
    seen = trio.run(_scenario, tmp_path, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen["victim_had_old_head"], "the scenario must leave the old object on the victim"
    assert isinstance(seen["purged"], int) and seen["purged"] >= 1, "the tombstone was purged"
    reads = seen["reads"]
    assert isinstance(reads, list) and reads
    served = [r for r in reads if r[2] == 200]
    assert not served, f"the deleted object was served: {served[:5]}"
    assert all(v is None or v[1] for v in seen["final"].values()), seen["final"]  # type: ignore[attr-defined]
