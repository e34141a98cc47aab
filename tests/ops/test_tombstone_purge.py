"""Tombstone purging and the re-sync of a node back from a long absence, on
real in-process nodes (RFC 0015).

* A tombstone every replica holds is forgotten everywhere once older than
  the retention, and not while a replica is down; that replica gets it
  first, then the purge follows.
* A node out of touch for longer than the retention serves no reads, gives
  its stale heads to nobody, and forgets the heads no peer holds. The same
  scenario with a node that was *not* away brings the deleted object back,
  so the rule is what keeps it deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import trio

from rimio.config import RepairConfig, StorageConfig
from rimio.core.digest import HeadKey
from rimio.core.frames import Status
from rimio.core.slots import slot_for_path
from rimio.node import Node
from rimio.storage.contact import write_contact
from rimio.testing import LocalCluster

SLOTS = 8
RETENTION = 4.0
STORAGE = StorageConfig(part_size_bytes=16 * 1024, inline_max_bytes=1024,
                        gc_interval_seconds=3600.0)
REPAIR = RepairConfig(interval_seconds=0, tombstone_retention_seconds=RETENTION)


async def _key(node: Node, path: str) -> HeadKey | None:
    assert node.replica is not None
    head = (await node.replica.get_head(slot_for_path(path, SLOTS), path)).head
    return None if head is None else HeadKey(head.generation, head.deleted, head.sha256)


async def _round(node: Node) -> bool:
    assert node.antientropy is not None
    return await node.antientropy.round()


async def _all_alive(c: LocalCluster) -> None:
    await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=15)


async def test_a_tombstone_all_replicas_hold_is_purged_after_the_retention(
        tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3, total_slots=SLOTS,
                            storage=STORAGE, repair=REPAIR) as c, \
            httpx.AsyncClient(timeout=30) as client:
        await _all_alive(c)
        url = c.nodes["node-1"].url + "/api/v1/blobs/"
        for name in ("gone", "kept"):
            assert (await client.put(url + name, content=b"v" * 3000)).status_code == 201
        c.crash("node-3")
        await c.wait_down("node-3")
        await c.wait_for(lambda: c.agree({"node-3": Status.DEAD}, ["node-1", "node-2"]),
                         within=15)
        assert (await client.delete(url + "gone")).status_code in (200, 204)
        await trio.sleep(RETENTION + 0.5)

        # a replica is down: its copy is still the object, so nothing is purged
        n1, n2 = c.nodes["node-1"], c.nodes["node-2"]
        await _round(n1)
        assert n1.purger is not None and n1.purger.stats.purged == 0
        tomb = await _key(n1, "gone")
        assert tomb is not None and tomb.deleted

        # it comes back: the round gives it the tombstone, then all forget it
        await c.start("node-3")
        await _all_alive(c)
        assert await _round(n1)
        for node in c.nodes.values():
            assert await _key(node, "gone") is None, node.node_id
            assert await _key(node, "kept") is not None
        assert n1.purger.stats.purged == 1
        assert (await client.get(url + "gone")).status_code == 404
        # the replicas agree: a round finds nothing to repair
        before = n2.antientropy.stats.slots_differing if n2.antientropy else -1
        assert await _round(n2)
        assert n2.antientropy is not None and n2.antientropy.stats.slots_differing == before


@pytest.mark.parametrize("away", [True, False], ids=["away", "control"])
async def test_a_node_back_from_a_long_absence_brings_nothing_back(tmp_path: Path,
                                                                   away: bool) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3, total_slots=SLOTS,
                            storage=STORAGE, repair=REPAIR) as c, \
            httpx.AsyncClient(timeout=30) as client:
        await _all_alive(c)
        url = c.nodes["node-1"].url + "/api/v1/blobs/"
        assert (await client.put(url + "p", content=b"old" * 2000)).status_code == 201
        old = await _key(c.nodes["node-3"], "p")
        assert old is not None
        disk = c.nodes["node-3"].config.spec.disks[0]
        c.crash("node-3")
        await c.wait_down("node-3")
        # While node-3 was away its peers deleted `p` and purged the
        # tombstone (as after a layout change that left node-3 out): here,
        # they forget the head directly.
        slot = slot_for_path("p", SLOTS)
        for name in ("node-1", "node-2"):
            assert await c.nodes[name].store.forget_heads(
                slot, {"p": old}, tombstones_only=False) == {"p"}
        write_contact(disk, time.time() - (10 * RETENTION if away else 0.0))
        await c.start("node-3")
        await _all_alive(c)
        n1, n3 = c.nodes["node-1"], c.nodes["node-3"]
        assert n3.resyncing() is away

        if away:
            # it serves no read of its own copy, through itself or for others
            assert (await client.get(n3.url + "/api/v1/blobs/p")).status_code == 404
            assert not await _round(n1)  # node-3 refuses to compare
            assert await _key(n1, "p") is None
        assert await _round(n3)
        assert not n3.resyncing()
        assert await _round(n1)
        resurrected = {name: await _key(node, "p") for name, node in c.nodes.items()}
        if away:
            assert resurrected == {n: None for n in c.nodes}
            assert n3.antientropy is not None and n3.antientropy.stats.stale_forgotten == 1
            assert (await client.get(url + "p")).status_code == 404
        else:
            # without the rule the old head comes back everywhere
            assert resurrected == {n: old for n in c.nodes}
