"""Anti-entropy on real nodes (RFC 0014): a replica that missed writes and
deletes while it was down converges in one round, pulled by itself or pushed
by a peer, with no client read involved; then it alone serves every write and
none of the deleted paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from rimio.config import RepairConfig, StorageConfig
from rimio.core.frames import Status
from rimio.node import Node
from rimio.testing import LocalCluster

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
