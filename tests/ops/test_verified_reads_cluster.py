"""Verified reads end to end on real nodes (rfcs/0013): a part file with one
flipped bit is never served as a good object. One node alone answers an
error before the first byte (a small part) or breaks the response (a large
part, past its first bytes); three replicas serve the right bytes from a
good copy, quarantine the bad one and fetch it again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from rimio.config import StorageConfig
from rimio.core.frames import Status
from rimio.core.slots import slot_for_path
from rimio.node import Node
from rimio.storage.verify import QUARANTINE_DIR, VERIFY_BUFFER_BYTES
from rimio.testing import LocalCluster
from rimio.testing.damage import flip_bit

SLOTS = 64
PART = 64 * 1024
# Objects here are larger than the read cache's per-object limit and are
# stored in part files: every GET reads their files.
STORAGE = StorageConfig(part_size_bytes=PART, inline_max_bytes=4096, gc_interval_seconds=3600.0)


def _flip(file: Path, at: int) -> None:
    flip_bit(file, at * 8 + 7)


async def _part_file(node: Node, path: str, index: int) -> Path:
    obj = await node.store.get_object(slot_for_path(path, SLOTS), path)
    assert obj is not None
    local = obj.parts[index].local_path
    assert local is not None
    return obj.slot_dir / local


def _quarantined(node: Node) -> list[Path]:
    disk = node.config.spec.disks[0]
    return [p for p in (disk / QUARANTINE_DIR).rglob("*") if p.is_file()]


async def test_one_node_never_answers_200_with_a_corrupt_body(tmp_path: Path) -> None:
    big_part = 2 * VERIFY_BUFFER_BYTES
    storage = StorageConfig(part_size_bytes=big_part, inline_max_bytes=0,
                            read_cache_bytes=0, gc_interval_seconds=3600.0)
    async with LocalCluster(tmp_path, 1, transport="memory", total_slots=SLOTS,
                            storage=storage) as c, httpx.AsyncClient(timeout=30) as client:
        [node] = c.nodes.values()
        url = f"{node.url}/api/v1/blobs"
        small = os.urandom(20_000)
        for name in ("s/whole", "s/range"):
            assert (await client.put(f"{url}/{name}", content=small)).status_code == 201
            _flip(await _part_file(node, name, 0), 15_000)
        r = await client.get(f"{url}/s/whole")
        assert r.status_code == 500 and r.json()["error"]["code"] == "part_corrupt"
        r = await client.get(f"{url}/s/range", headers={"Range": "bytes=0-99"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "part_corrupt"
        # A large object corrupted in its 2nd part: the response started with
        # the 1st part, and breaks before the 2nd one's last chunk.
        large = os.urandom(2 * big_part + 1000)
        assert (await client.put(f"{url}/l/x", content=large)).status_code == 201
        _flip(await _part_file(node, "l/x", 1), big_part - 10)
        got = bytearray()
        with pytest.raises(httpx.HTTPError):
            async with client.stream("GET", f"{url}/l/x") as resp:
                assert resp.status_code == 200
                async for chunk in resp.aiter_raw():
                    got += chunk
        assert len(got) < len(large) and bytes(got) == large[:len(got)]
        assert len(_quarantined(node)) == 3
        stats = await c.internal_stats(node.node_id)
        assert stats["verify"]["errors"] == 3 and stats["verify"]["quarantined"] == 3


async def test_three_replicas_serve_a_good_copy_and_heal_the_bad_one(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3, total_slots=SLOTS,
                            storage=STORAGE) as c, httpx.AsyncClient(timeout=30) as client:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        nodes = list(c.nodes.values())
        data = os.urandom(3 * PART + 500)
        r = await client.put(f"{nodes[0].url}/api/v1/blobs/h/x", content=data)
        assert r.status_code == 201, r.text
        bad = nodes[1]
        file = await _part_file(bad, "h/x", 1)
        good = file.read_bytes()
        _flip(file, 1000)
        for _ in range(3):  # this node reads its own copy first
            r = await client.get(f"{bad.url}/api/v1/blobs/h/x")
            assert r.status_code == 200 and r.content == data
            assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        r = await client.get(f"{bad.url}/api/v1/blobs/h/x",
                             headers={"Range": f"bytes={PART + 10}-{PART + 20}"})
        assert r.status_code == 206 and r.content == data[PART + 10:PART + 21]
        [evidence] = _quarantined(bad)
        assert evidence.name == file.name
        # fetched again from a good replica, in the background
        await c.wait_for(lambda: file.exists() and file.read_bytes() == good, within=10)
        stats = await c.internal_stats(bad.node_id)
        assert stats["read_repair"]["refetched"] >= 1 and stats["verify"]["quarantined"] == 1
        # the healed copy serves alone
        for other in nodes:
            if other is not bad:
                await c.stop(other.node_id)
        r = await client.get(f"{bad.url}/api/v1/blobs/h/x")
        assert r.status_code == 200 and r.content == data


async def test_when_every_copy_is_bad_the_client_is_told_part_corrupt(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 2, transport="memory", replicas=2, total_slots=SLOTS,
                            storage=STORAGE) as c, httpx.AsyncClient(timeout=30) as client:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        nodes = list(c.nodes.values())
        data = os.urandom(2 * PART)
        r = await client.put(f"{nodes[0].url}/api/v1/blobs/b/x", content=data)
        assert r.status_code == 201, r.text
        for node in nodes:
            _flip(await _part_file(node, "b/x", 0), 77)
        r = await client.get(f"{nodes[0].url}/api/v1/blobs/b/x")
        assert r.status_code == 500 and r.json()["error"]["code"] == "part_corrupt"
        assert all(len(_quarantined(node)) == 1 for node in nodes)
