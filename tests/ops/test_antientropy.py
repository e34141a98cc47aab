"""Anti-entropy on real nodes (RFC 0014): a replica that missed writes and
deletes while it was down converges in one round, pulled by itself or pushed
by a peer, with no client read involved; then it alone serves every write and
none of the deleted paths. A path that cannot be repaired does not hold up
the rest of its slot (on the simulated cluster of `rimio.testing.divergence`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from rimio.config import RepairConfig, StorageConfig
from rimio.core.frames import Status
from rimio.core.head import Head
from rimio.core.slots import slot_for_path
from rimio.node import Node
from rimio.testing import LocalCluster
from rimio.testing.chaos import EPOCH, ChaosCluster
from rimio.testing.divergence import (
    DIVERGENCE_PARAMS,
    flip_bit,
    part_file,
    put_version,
    run_in_sim,
)

SLOTS = 16
PART = 16 * 1024
STORAGE = StorageConfig(part_size_bytes=PART, inline_max_bytes=1024, gc_interval_seconds=3600.0)
OFF = RepairConfig(interval_seconds=0)


def _body(i: int) -> bytes:
    size = (10, 5000, 2 * PART + 3)[i % 3]  # inline, one part, three parts
    return hashlib.sha256(str(i).encode()).digest() * (size // 32) + b"y" * (size % 32)


async def _heads(node: Node) -> dict[str, str]:
    assert node.replica is not None
    return {h.path: h.sha256 for h in await node.replica.list_heads(None, "", None, 100_000)}


@pytest.mark.parametrize("runner", ["node-3", "node-1"], ids=["pulled", "pushed"])
async def test_a_replica_that_was_down_converges_in_one_round(tmp_path: Path,
                                                              runner: str) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3, total_slots=SLOTS,
                            storage=STORAGE, repair=OFF) as c, \
            httpx.AsyncClient(timeout=30) as client:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        url = c.nodes["node-1"].url + "/api/v1/blobs/"
        for i in range(12):
            assert (await client.put(url + f"old/{i}", content=_body(i))).status_code == 201
        c.crash("node-3")
        await c.wait_down("node-3")
        await c.wait_for(lambda: c.agree({"node-3": Status.DEAD}, ["node-1", "node-2"]),
                         within=15)
        for i in range(30):
            assert (await client.put(url + f"new/{i}", content=_body(i))).status_code == 201
        for i in range(0, 12, 3):
            assert (await client.delete(url + f"old/{i}")).status_code in (200, 204)
        await c.start("node-3")
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=15)
        behind, ahead = c.nodes["node-3"], c.nodes["node-1"]
        assert await _heads(behind) != await _heads(ahead)

        node = c.nodes[runner]
        assert node.antientropy is not None
        assert await node.antientropy.round()
        assert await _heads(behind) == await _heads(ahead) == await _heads(c.nodes["node-2"])
        stats = node.antientropy.stats
        moved = stats.heads_pulled if runner == "node-3" else stats.heads_pushed
        assert moved == 30 + 4, stats  # the new objects and the tombstones
        # one part per 5000-byte object, three per 2-part+3 one, none inline
        parts, sent = ((stats.parts_pulled, stats.bytes_pulled) if runner == "node-3"
                       else (stats.parts_pushed, stats.bytes_pushed))
        assert parts == 10 * 1 + 10 * 3, stats
        assert sent == stats.bytes_moved == sum(len(_body(i)) for i in range(30)), stats
        # the public status reports the same counters
        status = (await client.get(node.url + "/api/v1/status")).json()
        assert status["anti_entropy"] == node.antientropy.progress()
        # a second round finds nothing to do
        before = (stats.slots_differing, stats.heads_pulled, stats.heads_pushed)
        assert await node.antientropy.round()
        assert (stats.slots_differing, stats.heads_pulled, stats.heads_pushed) == before
        assert stats.last_full_round is not None

        # node-3 alone serves every write and none of the deleted paths
        await c.stop("node-1")
        await c.stop("node-2")
        alone = behind.url + "/api/v1/blobs/"
        for i in range(30):
            r = await client.get(alone + f"new/{i}")
            assert r.status_code == 200 and r.content == _body(i), (i, r.status_code)
        for i in range(12):
            r = await client.get(alone + f"old/{i}")
            assert r.status_code == (410 if i % 3 == 0 else 200), (i, r.status_code)


async def test_stats_show_anti_entropy(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3, total_slots=SLOTS,
                            storage=STORAGE) as c:
        await c.wait_for(lambda: all(n.antientropy is not None and n.antientropy.stats.rounds
                                     for n in c.nodes.values()), within=10)
        stats = c.nodes["node-1"].antientropy.progress()  # type: ignore[union-attr]
        assert {"rounds", "last_full_round", "backlog", "heads_pulled", "bytes_moved",
                "failures"} <= set(stats)


# The simulated cluster: three nodes, R = 3, 4 KiB parts, no background rounds.
SIM = DIVERGENCE_PARAMS


def _same_slot(prefix: str, count: int) -> list[str]:
    """`count` paths of one slot, sorted (the order anti-entropy repairs them in)."""
    by_slot: dict[int, list[str]] = {}
    for i in range(10_000):
        path = f"{prefix}/{i}"
        group = by_slot.setdefault(slot_for_path(path, SIM.total_slots), [])
        group.append(path)
        if len(group) == count:
            return sorted(group)
    raise AssertionError("no slot with enough paths")


def test_a_lost_object_does_not_stop_the_rest_of_its_slot() -> None:
    """A path whose only copy is damaged cannot be repaired (its bytes are
    gone), but the other paths of its slot must still converge: a failed
    path is counted and the next one repaired, not the slot given up at
    the first failure (which, repeated every round, would leave every path
    sorted after it unreplicated for good)."""
    paths = _same_slot("lost", 4)  # paths[0] sorts first: repaired first

    async def scenario(cluster: ChaosCluster) -> None:
        holder = cluster.hosts["n3"].node
        assert holder is not None and holder.replica is not None
        heads = {}
        for i, path in enumerate(paths):
            data = bytes([i + 1]) * (2 * SIM.part_size + 7)
            head = Head(kind="meta", path=path, slot_id=slot_for_path(path, SIM.total_slots),
                        generation=1, write_id="w", size_bytes=len(data),
                        etag=hashlib.sha256(data).hexdigest(),
                        part_size=SIM.part_size, part_count=3, timestamp=EPOCH)
            await put_version(holder.replica, head, data, SIM.inline_max_bytes)
            heads[path] = head
        flip_bit(await part_file(holder.store, heads[paths[0]], 1), 100)
        nodes = [cluster.hosts[n].node for n in cluster.founders]
        for node in nodes:
            assert node is not None and node.antientropy is not None
            assert not await node.antientropy.round()  # the lost path fails, counted
        for node in nodes:
            assert node is not None and node.replica is not None
            for path in paths[1:]:
                got = (await node.replica.get_head(heads[path].slot_id, path)).head
                assert got == heads[path], (node.node_id, path)
            # the lost one stays where it was: nobody has its bytes
            lost = (await node.replica.get_head(heads[paths[0]].slot_id, paths[0])).head
            assert (lost is not None) == (node.node_id == "n3")
        assert holder.antientropy is not None and holder.antientropy.stats.failures >= 2

    run_in_sim(21, scenario)
