import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from rimio.node import Node

PART = 4096  # as configured in conftest.py
MAX_OBJECT = 256 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data_files(node: Node) -> list[Path]:
    root = node.config.spec.disks[0] / "slots"
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("meta."))


async def test_put_get_head_roundtrip(client: httpx.AsyncClient) -> None:
    data = os.urandom(PART * 2 + 17)
    r = await client.put("/api/v1/blobs/dir/obj.bin", content=data)
    assert r.status_code == 201
    body = r.json()
    assert body["path"] == "dir/obj.bin"
    assert body["generation"] == 1 and body["size_bytes"] == len(data)
    assert body["etag"] == _sha(data) and body["committed_replicas"] == 1
    assert isinstance(body["slot_id"], int)

    r = await client.get("/api/v1/blobs/dir/obj.bin")
    assert r.status_code == 200 and r.content == data
    assert r.headers["etag"] == f'"{_sha(data)}"'
    assert r.headers["x-rimio-generation"] == "1"
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["accept-ranges"] == "bytes"

    r = await client.head("/api/v1/blobs/dir/obj.bin")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["etag"] == f'"{_sha(data)}"'


async def test_overwrite_and_empty_object(client: httpx.AsyncClient) -> None:
    await client.put("/api/v1/blobs/x", content=b"first")
    r = await client.put("/api/v1/blobs/x", content=b"")
    assert r.status_code == 201 and r.json()["generation"] == 2
    r = await client.get("/api/v1/blobs/x")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"


async def test_streamed_chunked_upload(client: httpx.AsyncClient) -> None:
    chunks = [os.urandom(3000) for _ in range(10)]

    async def gen() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    r = await client.put("/api/v1/blobs/stream", content=gen())
    assert r.status_code == 201
    r = await client.get("/api/v1/blobs/stream")
    assert r.content == b"".join(chunks)


@pytest.mark.parametrize(
    ("header", "status", "expect"),
    [
        ("bytes=0-9", 206, (0, 9)),
        ("bytes=4090-4105", 206, (4090, 4105)),  # crosses a part boundary
        ("bytes=-5", 206, (9995, 9999)),
        ("bytes=9000-", 206, (9000, 9999)),
        ("bytes=5-2", 200, None),  # invalid: ignored
        ("chunks=0-1", 200, None),
        ("bytes=0-1,5-6", 200, None),
    ],
)
async def test_ranges(client: httpx.AsyncClient, header: str, status: int,
                      expect: tuple[int, int] | None) -> None:
    data = os.urandom(10_000)
    await client.put("/api/v1/blobs/r", content=data)
    r = await client.get("/api/v1/blobs/r", headers={"Range": header})
    assert r.status_code == status
    if expect is None:
        assert r.content == data
    else:
        a, b = expect
        assert r.content == data[a:b + 1]
        assert r.headers["content-range"] == f"bytes {a}-{b}/10000"
        assert r.headers["content-length"] == str(b - a + 1)


async def test_unsatisfiable_range(client: httpx.AsyncClient) -> None:
    await client.put("/api/v1/blobs/r", content=b"abc")
    r = await client.get("/api/v1/blobs/r", headers={"Range": "bytes=3-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */3"
    assert r.json()["error"]["code"] == "range_not_satisfiable"


async def test_if_range_mismatch_sends_whole_object(client: httpx.AsyncClient) -> None:
    await client.put("/api/v1/blobs/r", content=b"abcdef")
    r = await client.get("/api/v1/blobs/r", headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert r.status_code == 200 and r.content == b"abcdef"


async def test_missing_and_deleted(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/blobs/never")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await client.delete("/api/v1/blobs/never")).status_code == 404
    await client.put("/api/v1/blobs/d", content=b"bye")
    r = await client.delete("/api/v1/blobs/d")
    assert r.status_code == 200 and r.json()["deleted"] is True and r.json()["generation"] == 2
    assert (await client.get("/api/v1/blobs/d")).status_code == 410
    assert (await client.head("/api/v1/blobs/d")).status_code == 410
    r = await client.put("/api/v1/blobs/d", content=b"back")
    assert r.json()["generation"] == 3
    assert (await client.get("/api/v1/blobs/d")).content == b"back"


@pytest.mark.parametrize(
    "raw",
    ["/api/v1/blobs/a/../b", "/api/v1/blobs/./a", "/api/v1/blobs/a%00b", "/api/v1/blobs/a%0Ab",
     "/api/v1/blobs/", "/api/v1/blobs//", "/api/v1/blobs/%2E%2E/x", "/api/v1/blobs/%FF",
     "/api/v1/blobs/" + "x" * 1025],
)
async def _raw_request(node: Node, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request line exactly as given (httpx would normalise `..` away)."""
    stream = await trio.open_tcp_stream(node.address.host, node.address.port)
    async with stream:
        head = (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        await stream.send_all(head + body)
        data = b""
        # Read by Content-Length, as clients do; `test_connection_close_is_honoured`
        # checks the server closes too.
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
            head_bytes, body = data.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":")[1]) for line in head_bytes.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                body += await stream.receive_some()
    return int(head_bytes.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "raw",
    ["/api/v1/blobs/a/../b", "/api/v1/blobs/./a", "/api/v1/blobs/a%00b", "/api/v1/blobs/a%0Ab",
     "/api/v1/blobs/", "/api/v1/blobs//", "/api/v1/blobs/%2E%2E/x", "/api/v1/blobs/%FF",
     "/api/v1/blobs/a/%2e/b", "/api/v1/blobs/" + "x" * 1025],
)
async def test_bad_paths_are_400_and_write_nothing(node: Node, raw: str) -> None:
    before = _data_files(node)
    for method in ("PUT", "GET", "DELETE"):
        status, body = await _raw_request(node, method, raw, b"x" if method == "PUT" else b"")
        assert status == 400, (method, raw, body)
        assert b'"bad_request"' in body
    assert _data_files(node) == before


async def test_double_slashes_collapse(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/v1/blobs//a//b/", content=b"1")
    assert r.status_code == 201 and r.json()["path"] == "a/b"
    assert (await client.get("/api/v1/blobs/a/b")).content == b"1"


async def test_percent_encoded_names(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/v1/blobs/caf%C3%A9/g.1/part.x%20y", content=b"1")
    assert r.status_code == 201 and r.json()["path"] == "café/g.1/part.x y"
    assert (await client.get("/api/v1/blobs/caf%C3%A9/g.1/part.x%20y")).content == b"1"


async def test_too_large_by_header_and_by_stream(node: Node, client: httpx.AsyncClient) -> None:
    before = _data_files(node)
    r = await client.put("/api/v1/blobs/big", content=b"x" * (MAX_OBJECT + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(MAX_OBJECT // 4096 + 2):
            yield b"y" * 4096

    try:
        r = await client.put("/api/v1/blobs/big", content=gen())
        assert r.status_code == 413
    except httpx.TransportError:
        pass  # the server may close the connection while the client still sends
    assert (await client.get("/api/v1/blobs/big")).status_code == 404
    assert _data_files(node) == before
    r = await client.put("/api/v1/blobs/ok", content=b"x" * MAX_OBJECT)
    assert r.status_code == 201


async def test_write_id_replay(client: httpx.AsyncClient) -> None:
    h = {"X-Rimio-Write-Id": "req-42"}
    first = await client.put("/api/v1/blobs/w", content=b"one", headers=h)
    assert first.status_code == 201
    again = await client.put("/api/v1/blobs/w", content=b"one", headers=h)
    assert again.status_code == 200
    assert again.json()["idempotent_replay"] is True
    assert again.json()["generation"] == first.json()["generation"]
    assert again.json()["etag"] == first.json()["etag"]
    assert (await client.get("/api/v1/blobs/w")).headers["x-rimio-generation"] == "1"
    bad = await client.put("/api/v1/blobs/w", content=b"x", headers={"X-Rimio-Write-Id": "a b"})
    assert bad.status_code == 400


async def test_conditional_puts(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/v1/blobs/c", content=b"v1", headers={"If-None-Match": "*"})
    assert r.status_code == 201
    etag = r.headers["etag"]
    r = await client.put("/api/v1/blobs/c", content=b"v2", headers={"If-None-Match": "*"})
    assert r.status_code == 412 and r.json()["error"]["code"] == "precondition_failed"
    r = await client.put("/api/v1/blobs/c", content=b"v2", headers={"If-Match": '"nope"'})
    assert r.status_code == 412
    r = await client.put("/api/v1/blobs/c", content=b"v2", headers={"If-Match": etag})
    assert r.status_code == 201
    r = await client.put("/api/v1/blobs/new", content=b"v", headers={"If-Match": "*"})
    assert r.status_code == 412
    assert (await client.get("/api/v1/blobs/c")).content == b"v2"
    r = await client.put("/api/v1/blobs/c", content=b"v", headers={"If-None-Match": '"x"'})
    assert r.status_code == 400


async def test_concurrent_if_none_match_only_one_wins(client: httpx.AsyncClient) -> None:
    statuses: list[int] = []

    async def one(i: int) -> None:
        r = await client.put("/api/v1/blobs/once", content=str(i).encode() * 5000,
                             headers={"If-None-Match": "*"})
        statuses.append(r.status_code)

    async with trio.open_nursery() as n:
        for i in range(6):
            n.start_soon(one, i)
    assert sorted(statuses) == [201] + [412] * 5


async def test_list_prefix_cursor_and_deleted(client: httpx.AsyncClient) -> None:
    for i in range(12):
        await client.put(f"/api/v1/blobs/logs/{i:02d}", content=b"x" * i)
    await client.put("/api/v1/blobs/other", content=b"o")
    await client.delete("/api/v1/blobs/logs/03")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"prefix": "logs/", "limit": "5"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/blobs", params=params)).json()
        seen += [it["path"] for it in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"logs/{i:02d}" for i in range(12) if i != 3]
    page = (await client.get("/api/v1/blobs", params={"prefix": "logs/0",
                                                       "include_deleted": "true"})).json()
    item = next(it for it in page["items"] if it["path"] == "logs/03")
    assert item["deleted"] is True and item["generation"] == 2
    first = page["items"][0]
    assert set(first) == {"path", "generation", "etag", "size_bytes", "deleted", "updated_at"}
    for bad in ({"limit": "0"}, {"limit": "x"}, {"cursor": "!!!"}, {"include_deleted": "maybe"}):
        assert (await client.get("/api/v1/blobs", params=bad)).status_code == 400


async def test_health_nodes_resolve(node: Node, client: httpx.AsyncClient) -> None:
    h = (await client.get("/api/v1/healthz")).json()
    assert h == {"status": "ok", "node_id": "node-1", "cluster": "rimio-local"}
    nodes = (await client.get("/api/v1/nodes")).json()["nodes"]
    assert nodes == [{"node_id": "node-1", "address": str(node.address), "status": "alive",
                      "incarnation": 0, "role": "active", "slots": 2048}]
    r = (await client.get("/api/v1/slots/resolve", params={"path": "/a//b"})).json()
    assert r["path"] == "a/b" and r["replicas"] == ["node-1"]
    assert node.layout is not None
    assert r["write_quorum"] == 1 and r["slot_epoch"] == node.layout.current.version
    cluster = (await client.get("/api/v1/cluster")).json()
    assert cluster == {"layout_version": node.layout.current.version, "replicas": 1,
                       "write_quorum": 1, "moving_slots": 0}
    assert (await client.get("/api/v1/slots/resolve", params={"path": ".."})).status_code == 400
    assert (await client.get("/api/v1/slots/resolve")).status_code == 400


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404 and "error" in r.json()
    r = await client.post("/api/v1/blobs/x", content=b"")
    assert r.status_code == 405 and "error" in r.json()


async def test_client_disconnect_mid_upload_leaves_nothing(node: Node) -> None:
    before = _data_files(node)

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield os.urandom(PART)
        raise RuntimeError("client gives up")

    async with httpx.AsyncClient(base_url=node.url) as c:
        with pytest.raises(RuntimeError):
            await c.put("/api/v1/blobs/abandoned", content=gen(),
                        headers={"Content-Length": str(PART * 20)})
    for _ in range(50):
        if _data_files(node) == before:
            break
        await trio.sleep(0.05)
    assert _data_files(node) == before
    async with httpx.AsyncClient(base_url=node.url) as c:
        assert (await c.get("/api/v1/blobs/abandoned")).status_code == 404


async def test_connection_is_usable_after_an_early_answer(client: httpx.AsyncClient) -> None:
    """Answers given before the body was read (replay, 413) must not poison the
    next request on a kept-alive connection."""
    h = {"X-Rimio-Write-Id": "again"}
    body = os.urandom(200_000)
    assert (await client.put("/api/v1/blobs/e", content=body, headers=h)).status_code == 201
    for _ in range(3):
        r = await client.put("/api/v1/blobs/e", content=body, headers=h)
        assert r.status_code == 200
        with trio.fail_after(5):
            assert (await client.get("/api/v1/healthz")).status_code == 200


async def test_connection_close_is_honoured(node: Node) -> None:
    """quart-trio cancelled the handler inside its last send, which kept
    hypercorn from closing the socket; `api/body.py` prevents that."""
    for method, target, body in (("GET", "/api/v1/healthz", b""),
                                 ("PUT", "/api/v1/blobs/a/../b", b"x"),
                                 ("PUT", "/api/v1/blobs/ok", b"x")):
        stream = await trio.open_tcp_stream(node.address.host, node.address.port)
        async with stream:
            await stream.send_all(f"{method} {target} HTTP/1.1\r\nHost: x\r\n"
                                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                                  .encode() + body)
            with trio.fail_after(5):
                while await stream.receive_some():
                    pass  # read until the server closes


async def test_keep_alive_connections_are_reused(node: Node) -> None:
    stream = await trio.open_tcp_stream(node.address.host, node.address.port)
    async with stream:
        for _ in range(3):
            await stream.send_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            with trio.fail_after(5):
                while b'"cluster"' not in data:
                    chunk = await stream.receive_some()
                    assert chunk, "the server closed a keep-alive connection"
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200")
