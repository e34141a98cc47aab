"""A cluster with one replica per slot: any node serves any path, by
forwarding to the node that holds its slot; listings are cluster-wide."""

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from rimio.cluster.peers import (
    FORWARD_RESPONSE_HEADERS,
    FORWARDED_BY,
    PeerClient,
    forward_headers,
)
from rimio.config import (
    Address,
    ClusterConfig,
    NodeConfig,
    NodeSpec,
    ReplicationConfig,
    single_node_config,
)
from rimio.core.errors import QuorumLost
from rimio.core.frames import Status
from rimio.node import Node
from rimio.testing import LocalCluster, free_port


async def test_any_node_serves_any_path(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="http", replicas=1) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        urls = [n.url for n in c.nodes.values()]
        bodies = {f"dir/{i:02d}": os.urandom(100 + i * 3000) for i in range(24)}
        owners = set()
        async with httpx.AsyncClient(timeout=30) as client:
            for i, (path, body) in enumerate(bodies.items()):
                r = await client.put(f"{urls[i % 3]}/api/v1/blobs/{path}", content=body)
                assert r.status_code == 201, r.text
                assert r.json()["etag"] == hashlib.sha256(body).hexdigest()
                res = (await client.get(f"{urls[0]}/api/v1/slots/resolve",
                                        params={"path": path})).json()
                owners.add(res["replicas"][0])
            assert len(owners) > 1  # the paths really are spread over the nodes
            for i, (path, body) in enumerate(bodies.items()):
                r = await client.get(f"{urls[(i + 1) % 3]}/api/v1/blobs/{path}")
                assert r.status_code == 200 and r.content == body
                assert r.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
                r = await client.get(f"{urls[(i + 2) % 3]}/api/v1/blobs/{path}",
                                     headers={"Range": "bytes=1-10"})
                assert r.status_code == 206 and r.content == body[1:11]
                h = await client.head(f"{urls[(i + 2) % 3]}/api/v1/blobs/{path}")
                assert h.status_code == 200 and h.headers["content-length"] == str(len(body))
            # a cluster-wide listing from any node, paged
            for url in urls:
                seen, cursor = [], None
                while True:
                    params = {"prefix": "dir/", "limit": "5"} | ({"cursor": cursor} if cursor
                                                                  else {})
                    page = (await client.get(f"{url}/api/v1/blobs", params=params)).json()
                    seen += [it["path"] for it in page["items"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                assert seen == sorted(bodies)
            r = await client.delete(f"{urls[1]}/api/v1/blobs/dir/00")
            assert r.status_code == 200
            assert (await client.get(f"{urls[2]}/api/v1/blobs/dir/00")).status_code == 410
            r = await client.put(f"{urls[2]}/api/v1/blobs/dir/01", content=b"x",
                                 headers={"If-None-Match": "*"})
            assert r.status_code == 412


async def test_down_owner_answers_503(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=1) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        async with httpx.AsyncClient(timeout=30) as client:
            url1 = c.nodes["node-1"].url
            path = ""
            for i in range(100):
                res = (await client.get(f"{url1}/api/v1/slots/resolve",
                                        params={"path": f"k{i}"})).json()
                if res["replicas"] == ["node-3"]:
                    path = f"k{i}"
                    break
            assert (await client.put(f"{url1}/api/v1/blobs/{path}",
                                     content=b"v")).status_code == 201
            c.crash("node-3")
            await c.wait_down("node-3")
            await c.wait_for(lambda: c.agree({"node-3": Status.DEAD}), within=15)
            r = await client.get(f"{url1}/api/v1/blobs/{path}")
            assert r.status_code == 503 and r.json()["error"]["code"] == "quorum_lost"
            r = await client.get(f"{url1}/api/v1/blobs")
            assert r.status_code == 503


def test_forward_headers_keep_end_to_end_ones_and_name_the_sender() -> None:
    sent = forward_headers([("Range", "bytes=0-1"), ("If-Match", '"e"'), ("Host", "a:1"),
                            ("Connection", "close"), ("Transfer-Encoding", "chunked"),
                            ("Cookie", "c"), ("Content-Length", "3"),
                            ("X-Rimio-Write-Id", "w")], via="node-1")
    assert sent == {"Range": "bytes=0-1", "If-Match": '"e"', "Content-Length": "3",
                    "X-Rimio-Write-Id": "w", FORWARDED_BY: "node-1"}
    with pytest.raises(QuorumLost, match="misrouted"):
        forward_headers([(FORWARDED_BY.lower(), "node-2")], via="node-1")


@pytest.fixture
async def one_node(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(single_node_config(tmp_path / "data")) as node:
        yield node


async def _collect(body: AsyncIterator[bytes] | None) -> bytes:
    assert body is not None
    return b"".join([chunk async for chunk in body])


async def test_peer_client_forwards_and_streams(one_node: Node) -> None:
    address = str(one_node.address)
    data = os.urandom(5000)
    peers = PeerClient(None)
    try:
        async def body() -> AsyncIterator[bytes]:
            yield data[:1000]
            yield data[1000:]

        put = await peers.forward(address, "PUT", "/api/v1/blobs/f", [("Cookie", "x")], body(),
                                  via="node-9")
        assert put.status == 201
        assert json.loads(await _collect(put.body))["etag"] == hashlib.sha256(data).hexdigest()

        got = await peers.forward(address, "GET", "/api/v1/blobs/f",
                                  [("Range", "bytes=10-19"), ("Connection", "close")], None,
                                  via="node-9")
        assert got.status == 206 and set(got.headers) <= FORWARD_RESPONSE_HEADERS
        assert got.headers["content-range"] == "bytes 10-19/5000"
        assert got.headers["content-length"] == "10"
        assert await _collect(got.body) == data[10:20]

        head = await peers.forward(address, "HEAD", "/api/v1/blobs/f", [], None, via="node-9")
        assert head.status == 200 and head.body is None
        assert head.headers["content-length"] == "5000"

        missing = await peers.forward(address, "GET", "/api/v1/blobs/nope", [], None,
                                      via="node-9")
        assert missing.status == 404 and b"not_found" in await _collect(missing.body)

        # a request that was forwarded once is not sent on again
        with pytest.raises(QuorumLost, match="misrouted"):
            await peers.forward(address, "DELETE", "/api/v1/blobs/f",
                                [(FORWARDED_BY, "node-2")], None, via="node-9")
        again = await peers.forward(address, "GET", "/api/v1/blobs/f", [], None, via="node-9")
        assert again.status == 200 and await _collect(again.body) == data

        with pytest.raises(QuorumLost, match="unreachable"):
            await peers.forward(f"127.0.0.1:{free_port()}", "GET", "/api/v1/blobs/f", [], None,
                                via="node-9")
    finally:
        await peers.aclose()


async def _serve_canned(answer: bytes, *,
                        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A stand-in peer that answers every request with `answer` (a 200 JSON body)."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                data += chunk
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n").encode()
        try:
            await stream.send_all(head + answer)
            await stream.aclose()
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handle, 0)
        task_status.started(listeners[0].socket.getsockname()[1])


_GOOD_HEAD = {"kind": "meta", "path": "x", "slot_id": 1, "generation": 1, "write_id": "w",
              "size_bytes": 1, "etag": "e", "part_size": 1, "part_count": 1, "updated_at": 0.0}


@pytest.mark.parametrize(
    "listing",
    [
        json.dumps({"heads": [{"kind": "meta", "path": "x"}]}).encode(),  # fields missing
        json.dumps({"heads": [_GOOD_HEAD | {"generation": -1}]}).encode(),
        json.dumps({"heads": [_GOOD_HEAD | {"kind": "other"}]}).encode(),
        json.dumps({"heads": [_GOOD_HEAD, "not a head"]}).encode(),
        json.dumps({"heads": 5}).encode(),
        json.dumps({"items": []}).encode(),
        b"not json",
    ],
)
async def test_malformed_listing_from_a_peer_is_503(tmp_path: Path, listing: bytes) -> None:
    """A peer's bad listing is the peer's fault: the client sees 503, not 400 or 500."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_canned, listing)
        me = NodeSpec("node-1", Address("127.0.0.1", 0), Address("127.0.0.1", 0),
                      (tmp_path / "node-1",))
        peer = NodeSpec("node-2", Address("127.0.0.1", port), Address("127.0.0.1", port),
                        (tmp_path / "node-2",))
        cluster = ClusterConfig(name="t", nodes=(me, peer),
                                replication=ReplicationConfig(replicas=1), insecure=True)
        async with Node(NodeConfig(cluster=cluster, spec=me)) as node, \
                httpx.AsyncClient(base_url=node.url, timeout=30) as client:
            r = await client.get("/api/v1/blobs")
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "quorum_lost" and "malformed" in error["message"]
        nursery.cancel_scope.cancel()
