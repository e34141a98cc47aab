"""The scrub on real nodes (rfcs/0017): a node's pass finds a flipped bit and a
deleted part file, fetches those parts from its peers over the internal API,
and then serves the right bytes alone; its counters are in
/internal/v1/stats. The single-part restore route (`PUT
/internal/v1/slots/{slot}/parts/{index}`) installs only bytes that match the
replica's own row."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rimio.cluster.replicas import SLOTS as SLOTS_ROUTE
from rimio.cluster.replicas import HttpReplica
from rimio.config import RepairConfig, StorageConfig
from rimio.core.frames import Status
from rimio.core.replica import PartMissing, ReplicaUnavailable, RestoreUnsupported
from rimio.core.slots import slot_for_path
from rimio.node import Node
from rimio.storage.store import StoredObject
from rimio.testing import LocalCluster
from rimio.testing.damage import flip_bit

SLOTS = 32
PART = 32 * 1024
STORAGE = StorageConfig(part_size_bytes=PART, inline_max_bytes=2048, gc_interval_seconds=3600.0)
# no background pass: the tests run passes themselves
NO_SCRUB = RepairConfig(interval_seconds=0, scrub_bytes_per_second=0)


def _flip(file: Path, at: int) -> None:
    flip_bit(file, at * 8 + 5)


async def _obj(node: Node, path: str) -> StoredObject:
    obj = await node.store.get_object(slot_for_path(path, SLOTS), path)
    assert obj is not None
    return obj


async def _file(node: Node, path: str, index: int) -> Path:
    obj = await _obj(node, path)
    local = obj.parts[index].local_path
    assert local is not None
    return obj.slot_dir / local


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 5000):
        yield data[i:i + 5000]


async def test_a_pass_heals_a_node_that_then_serves_alone(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3, total_slots=SLOTS,
                            storage=STORAGE, repair=NO_SCRUB) as c, \
            httpx.AsyncClient(timeout=30) as client:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        nodes = list(c.nodes.values())
        url = f"{nodes[0].url}/api/v1/blobs"
        objects = {"s/big": os.urandom(3 * PART + 9), "s/one": os.urandom(PART // 2),
                   "s/tiny": os.urandom(900)}
        for path, data in objects.items():
            assert (await client.put(f"{url}/{path}", content=data)).status_code == 201
        bad = nodes[2]
        _flip(await _file(bad, "s/big", 2), 77)
        os.unlink(await _file(bad, "s/one", 0))
        assert bad.scrubber is not None
        await bad.scrubber.scrub_pass()
        stats = (await c.internal_stats(bad.node_id))["scrub"]
        assert (stats["corrupt"], stats["missing"], stats["refetched"],
                stats["refetch_failed"], stats["passes"]) == (1, 1, 2, 0, 1)
        assert stats["parts_checked"] == 4 + 1 + 1 and stats["last_pass"] is not None
        for other in nodes[:2]:
            await c.stop(other.node_id)
        for path, data in objects.items():
            r = await client.get(f"{bad.url}/api/v1/blobs/{path}")
            assert r.status_code == 200 and r.content == data, path


async def test_the_restore_route_installs_only_matching_bytes(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 2, transport="memory", replicas=2, total_slots=SLOTS,
                            storage=STORAGE, repair=NO_SCRUB) as c, \
            httpx.AsyncClient(timeout=30) as client:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        asking, holder = list(c.nodes.values())
        data = os.urandom(2 * PART)
        r = await client.put(f"{asking.url}/api/v1/blobs/r/x", content=data)
        assert r.status_code == 201
        obj = await _obj(holder, "r/x")
        file = await _file(holder, "r/x", 1)
        os.unlink(file)
        assert asking.objects is not None and asking.objects.coordinator is not None
        remote = asking.objects.coordinator.ctx.replica_for(holder.node_id)
        assert isinstance(remote, HttpReplica)
        with pytest.raises(ReplicaUnavailable, match="400"):
            await remote.restore_part(obj.head, 1, _chunks(data[:PART]))  # part 0's bytes
        assert not file.exists()
        with pytest.raises(PartMissing):
            await remote.restore_part(obj.head, 3, _chunks(data[PART:]))
        info = await remote.restore_part(obj.head, 1, _chunks(data[PART:]))
        assert (info.index, info.size_bytes) == (1, PART)
        assert file.read_bytes() == data[PART:]
        await c.stop(asking.node_id)
        r = await client.get(f"{holder.url}/api/v1/blobs/r/x")
        assert r.status_code == 200 and r.content == data


async def test_a_route_a_replica_does_not_serve_so_reads_as_unsupported(
        tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 2, transport="memory", replicas=2, total_slots=SLOTS,
                            storage=STORAGE, repair=NO_SCRUB) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        asking, other = list(c.nodes.values())
        assert asking.objects is not None and asking.objects.coordinator is not None
        remote = asking.objects.coordinator.ctx.replica_for(other.node_id)
        assert isinstance(remote, HttpReplica)
        # what an older node answers a restore: its part route has GET only
        with pytest.raises(RestoreUnsupported):
            await remote._json("PUT", f"{SLOTS_ROUTE}/1/head?path=a")
