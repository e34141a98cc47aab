"""The route handlers on an app of their own: a real `ObjectService` over a
real `LocalStore` in tmp_path, driven at the ASGI level by `AsgiClient` (no
node, no server; membership built but never started): the object routes through the lean ASGI path,
the others through quart. The end-to-end behaviour over HTTP is in test_blobs.py.
"""

import hashlib
import os
from typing import Any

import pytest

from rimio.api.app import NodeView, create_app
from rimio.api.asgi_blobs import INLINE_READ

# `AsgiClient` (tests/api/conftest.py); the fixtures' classes are not importable here.
Client = Any
PART = 512 * 1024  # as the `view` fixture configures it (conftest.py)
MAX_OBJECT = 4 * INLINE_READ


@pytest.fixture
async def client(view: NodeView, asgi_client: Any) -> Client:
    return asgi_client(create_app(view))


def _etag(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()}"'


async def test_put_answers_201_then_replay_200(client: Client) -> None:
    h = {"X-Rimio-Write-Id": "w-1"}
    r = await client.put("/api/v1/blobs/a/b", body=b"hello", headers=h)
    assert r.status_code == 201 and r.headers["ETag"] == _etag(b"hello")
    body = r.json()
    assert body["path"] == "a/b" and body["generation"] == 1 and "idempotent_replay" not in body
    r = await client.put("/api/v1/blobs/a/b", body=b"hello", headers=h)
    assert r.status_code == 200 and r.json()["idempotent_replay"] is True
    assert r.headers["ETag"] == _etag(b"hello")


async def test_put_headers_are_parsed(client: Client) -> None:
    r = await client.put("/api/v1/blobs/c", body=b"1", headers={"If-None-Match": "*"})
    assert r.status_code == 201
    r = await client.put("/api/v1/blobs/c", body=b"2", headers={"If-None-Match": "*"})
    assert r.status_code == 412
    r = await client.put("/api/v1/blobs/c", body=b"2", headers={"If-Match": f'W/"x", {_etag(b"1")}'})
    assert r.status_code == 201
    r = await client.put("/api/v1/blobs/c", body=b"3", headers={"If-None-Match": '"x"'})
    assert r.status_code == 400
    r = await client.put("/api/v1/blobs/big", body=b"", headers={"Content-Length": "1x"})
    assert r.status_code == 400
    r = await client.put("/api/v1/blobs/big", body=b"",
                         headers={"Content-Length": str(MAX_OBJECT + 1)})
    assert r.status_code == 413


@pytest.mark.parametrize("size", [10, INLINE_READ + PART // 2 + 5])  # inline and streamed reads
async def test_get_whole_range_and_if_range(client: Client, size: int) -> None:
    data = os.urandom(size)
    assert (await client.put("/api/v1/blobs/r", body=data)).status_code == 201
    r = await client.get("/api/v1/blobs/r")
    assert r.status_code == 200 and r.body == data
    assert r.headers["ETag"] == _etag(data) and r.headers["X-Rimio-Generation"] == "1"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert "Content-Range" not in r.headers

    r = await client.get("/api/v1/blobs/r", headers={"Range": "bytes=2-5", "If-Range": _etag(data)})
    assert r.status_code == 206 and r.body == data[2:6]
    assert r.headers["Content-Range"] == f"bytes 2-5/{size}"
    assert r.headers["Content-Length"] == "4"

    if size > PART:
        r = await client.get("/api/v1/blobs/r", headers={"Range": f"bytes={PART - 2}-{PART + 1}"})
        assert r.status_code == 206 and r.body == data[PART - 2:PART + 2]

    r = await client.get("/api/v1/blobs/r", headers={"Range": "bytes=2-5", "If-Range": '"old"'})
    assert r.status_code == 200 and r.body == data

    r = await client.get("/api/v1/blobs/r", headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"


async def test_head_has_no_body(client: Client) -> None:
    await client.put("/api/v1/blobs/h", body=b"abc")
    r = await client.head("/api/v1/blobs/h")
    assert r.status_code == 200 and r.body == b"" and r.headers["Content-Length"] == "3"
    assert r.headers["ETag"] == _etag(b"abc")


async def test_empty_object(client: Client) -> None:
    await client.put("/api/v1/blobs/e", body=b"")
    r = await client.get("/api/v1/blobs/e")
    assert r.status_code == 200 and r.body == b""
    assert r.headers["Content-Length"] == "0"


async def test_delete_then_gone(client: Client) -> None:
    assert (await client.delete("/api/v1/blobs/d")).status_code == 404
    await client.put("/api/v1/blobs/d", body=b"x")
    r = await client.delete("/api/v1/blobs/d", headers={"X-Rimio-Write-Id": "del-1"})
    assert r.status_code == 200
    body = r.json()
    assert body["deleted"] is True and body["generation"] == 2
    r = await client.delete("/api/v1/blobs/d", headers={"X-Rimio-Write-Id": "del-1"})
    assert r.status_code == 200 and r.json()["idempotent_replay"] is True
    assert (await client.get("/api/v1/blobs/d")).status_code == 410
    assert (await client.head("/api/v1/blobs/d")).status_code == 410


async def test_bad_paths(client: Client) -> None:
    for method in ("GET", "PUT", "DELETE"):
        # (invalid UTF-8 is checked in test_http and test_blobs: the test client
        # builds the raw target from a decoded path)
        for target in ("/api/v1/blobs/a/../b", "/api/v1/blobs/a%00b", "/api/v1/blobs/"):
            r = await client.request(method, target, b"x" if method == "PUT" else b"")
            assert r.status_code == 400, (method, target)
            assert r.json()["error"]["code"] == "bad_request"


async def test_list(client: Client) -> None:
    for name in ("p/1", "p/2", "p/3", "q/1"):
        await client.put(f"/api/v1/blobs/{name}", body=b"x")
    await client.delete("/api/v1/blobs/p/2")
    page = (await client.get("/api/v1/blobs?prefix=p/&limit=1")).json()
    assert [it["path"] for it in page["items"]] == ["p/1"] and page["next_cursor"]
    rest = (await client.get(f"/api/v1/blobs?prefix=p/&cursor={page['next_cursor']}")).json()
    assert [it["path"] for it in rest["items"]] == ["p/3"] and rest["next_cursor"] is None
    for flag in ("true", "1", "TRUE"):
        page = (await client.get(f"/api/v1/blobs?prefix=p/&include_deleted={flag}")).json()
        assert [(it["path"], it["deleted"]) for it in page["items"]] == [
            ("p/1", False), ("p/2", True), ("p/3", False)]
    for bad in ("limit=0", "limit=-1", "limit=1234567890", "include_deleted=yes"):
        assert (await client.get(f"/api/v1/blobs?{bad}")).status_code == 400


async def test_node_routes(client: Client) -> None:
    h = (await client.get("/api/v1/healthz")).json()
    assert h == {"status": "ok", "node_id": "node-1", "cluster": "rimio-local"}
    nodes = ((await client.get("/api/v1/nodes")).json())["nodes"]
    assert nodes == [{"node_id": "node-1", "address": "127.0.0.1:7000", "status": "alive",
                      "role": "active", "slots": 2048,
                      "incarnation": 0}]
    res = (await client.get("/api/v1/slots/resolve?path=/x//y")).json()
    assert res["path"] == "x/y" and res["replicas"] == ["node-1"]
    assert (await client.get("/api/v1/slots/resolve")).status_code == 400


async def test_internal_heads_without_a_key(client: Client) -> None:
    await client.put("/api/v1/blobs/k/1", body=b"x")
    await client.put("/api/v1/blobs/k/2", body=b"y")
    await client.delete("/api/v1/blobs/k/2")
    r = await client.get("/internal/v1/heads?prefix=k/&limit=10")
    heads = r.json()["heads"]
    assert [(h["path"], h["kind"]) for h in heads] == [("k/1", "meta"), ("k/2", "tombstone")]
    assert (await client.get("/internal/v1/heads?limit=0")).status_code == 400
    seeds = (await client.get("/internal/v1/cluster/gossip-seeds")).json()
    assert seeds == {"seeds": ["127.0.0.1:7000"]}


async def test_internal_stats_count_storage_work(client: Client) -> None:
    before = (await client.get("/internal/v1/stats")).json()
    assert set(before) >= {"slot_cache", "read_cache", "recovered_writes", "migrated_slots"}
    assert (await client.put("/api/v1/blobs/stats/a", body=b"x" * 100)).status_code == 201
    for _ in range(2):
        assert (await client.get("/api/v1/blobs/stats/a")).status_code == 200
    after = (await client.get("/internal/v1/stats")).json()
    reads = after["read_cache"]["hits"] + after["read_cache"]["misses"]
    assert reads >= before["read_cache"]["hits"] + before["read_cache"]["misses"] + 2
    assert after["slot_cache"]["opens"] >= before["slot_cache"]["opens"]
    assert after["slot_cache"]["open_now"] >= 1
