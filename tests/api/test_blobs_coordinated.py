"""The object routes over a coordinated slot: `X-Rimio-Read-Quorum: degraded`
on a read below quorum, and `503 outcome_unknown` when a write reached too
few replicas. The replicas are the in-memory doubles of tests/ops."""

import sys
from pathlib import Path
from typing import Any

import trio

from rimio.api.asgi_blobs import BlobApp
from rimio.config import single_node_config
from rimio.ops.objects import ObjectService
from rimio.storage.store import LocalStore

_OPS = str(Path(__file__).resolve().parents[1] / "ops")
if _OPS not in sys.path:
    sys.path.insert(0, _OPS)

from coordinator_harness import TOTAL_SLOTS, Harness  # noqa: E402


async def test_degraded_reads_and_unknown_outcomes_are_told_to_the_client(
        tmp_path: Path, nursery: trio.Nursery, asgi_client: Any) -> None:
    config = single_node_config(tmp_path / "d", node_id="node-1")
    store = LocalStore(config.spec.disks, total_slots=TOTAL_SLOTS, part_size=4096)
    await store.open()
    try:
        h = Harness()
        coord = h.coordinator("node-1")
        await nursery.start(coord.run)
        client = asgi_client(BlobApp(ObjectService(config, store, coordinator=coord), "node-1"))
        r = await client.put("/api/v1/blobs/c/x", b"0123456789" * 5)
        assert r.status == 201 and r.json()["committed_replicas"] == 3
        r = await client.get("/api/v1/blobs/c/x")
        assert r.status == 200 and r.body == b"0123456789" * 5
        assert "x-rimio-read-quorum" not in r.headers
        h.kill("n0", "n1")
        r = await client.get("/api/v1/blobs/c/x", {"Range": "bytes=10-19"})
        assert r.status == 206 and r.body == b"0123456789"
        assert r.headers["x-rimio-read-quorum"] == "degraded"
        h.revive("n0", "n1")
        h.replicas["n1"].apply_fails = h.replicas["n2"].apply_fails = True
        r = await client.put("/api/v1/blobs/c/y", b"abc")
        assert r.status == 503 and r.json()["error"]["code"] == "outcome_unknown"
        h.kill("n1", "n2")
        r = await client.put("/api/v1/blobs/c/z", b"abc")
        assert r.status == 503 and r.json()["error"]["code"] == "quorum_lost"
    finally:
        await store.close()
