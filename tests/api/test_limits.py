"""The server's limits: in-flight requests, the upload rate, header and idle
timeouts (over real sockets), and the forwarded-request pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from rimio.api.limits import RequestLimits
from rimio.cluster.peers import ForwardPoolExhausted, PeerClient
from rimio.config import NodeConfig, ServerConfig, single_node_config
from rimio.node import Node

from .conftest import AsgiClient

# -- in-flight requests ---------------------------------------------------------


class _Gate:
    """An app whose requests wait until released."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_requests_beyond_the_cap_get_503_with_retry_after() -> None:
    gate = _Gate()
    limits = RequestLimits(gate, max_inflight=2, min_body_rate=0, body_grace=0)
    client = AsgiClient(limits)
    answers: list[Any] = []
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(lambda: _collect(client, "/api/v1/healthz", answers))
        await trio.testing.wait_all_tasks_blocked()
        assert limits.inflight == 2
        busy = await client.get("/api/v1/healthz")
        assert busy.status == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.headers["connection"] == "close"
        assert busy.json()["error"]["code"] == "busy"
        # gossip keeps flowing: a busy node must not look dead to its peers
        nursery.start_soon(lambda: _collect(client, "/internal/v1/gossip/packet", answers))
        await trio.testing.wait_all_tasks_blocked()
        assert gate.entered == 3 and limits.refused == 1
        gate.release.set()
    assert [a.status for a in answers] == [200, 200, 200]
    assert limits.inflight == 0
    assert (await client.get("/api/v1/healthz")).status == 200


async def _collect(client: AsgiClient, target: str, answers: list[Any]) -> None:
    answers.append(await client.get(target))


# -- the upload rate ------------------------------------------------------------


class _Reader:
    """An app that reads the whole body, then answers 201; `pause` between
    chunks plays a node busy writing (backpressure)."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.cancelled = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                if not message.get("more_body", False):
                    break
                await trio.sleep(self.pause)
        except trio.Cancelled:
            self.cancelled = True
            raise
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "PUT", "path": "/api/v1/blobs/x", "headers": []}


async def test_a_stalled_upload_is_cut_off_with_408() -> None:
    app = _Reader()
    limits = RequestLimits(app, max_inflight=8, min_body_rate=1000, body_grace=0.2)
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": b"x" * 100, "more_body": True}]

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        await trio.sleep_forever()  # the client stalls
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    start = trio.current_time()
    with trio.fail_after(5):
        await limits(_scope(), receive, send)
    # 100 bytes buy 0.1 s on top of the 0.2 s grace
    assert 0.25 <= trio.current_time() - start < 2
    assert app.cancelled
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert limits.inflight == 0


async def test_time_the_node_spends_writing_does_not_count_against_the_client() -> None:
    app = _Reader(pause=0.1)  # the node takes 0.1 s per chunk; the client is instant
    limits = RequestLimits(app, max_inflight=8, min_body_rate=1_000_000, body_grace=0.05)
    chunks = [{"type": "http.request", "body": b"x", "more_body": i > 0} for i in range(6)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await limits(_scope(), receive, send)
    assert sent[0]["status"] == 201 and not app.cancelled


# -- over real sockets ----------------------------------------------------------

SERVER = ServerConfig(header_timeout_seconds=0.5, idle_timeout_seconds=0.8,
                      min_body_rate_bytes_per_second=1000, body_rate_grace_seconds=0.5)


@pytest.fixture
async def strict_node(tmp_path: Path) -> AsyncIterator[Node]:
    config = single_node_config(tmp_path / "data")
    config = NodeConfig(cluster=replace(config.cluster, server=SERVER), spec=config.spec)
    async with Node(config) as n:
        yield n


async def _until_closed(stream: trio.SocketStream, limit: float) -> tuple[float, bytes]:
    """Read until the server closes; (seconds it took, what was received)."""
    start = trio.current_time()
    received = b""
    with trio.fail_after(limit):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset
                break
            if not data:
                break
            received += data
    return trio.current_time() - start, received


async def test_a_stalled_upload_gets_its_connection_closed(strict_node: Node) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", strict_node.address.port)
    async with stream:
        await stream.send_all(b"PUT /api/v1/blobs/stalled HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 100000\r\n\r\n" + b"y" * 100)
        took, received = await _until_closed(stream, 5)
    assert took < 3
    assert received.startswith(b"HTTP/1.1 408")
    assert strict_node.objects is not None
    with pytest.raises(Exception, match="does not exist"):
        await strict_node.objects.open_read("stalled")


async def test_a_slow_request_head_gets_its_connection_closed(strict_node: Node) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", strict_node.address.port)
    async with stream:
        await stream.send_all(b"GET /api/v1/healthz HTTP/1.1\r\nHo")
        took, received = await _until_closed(stream, 5)
    assert took < 2 and received == b""


async def test_an_idle_connection_is_closed(strict_node: Node) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", strict_node.address.port)
    async with stream:
        await stream.send_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        took, received = await _until_closed(stream, 5)
    assert received.startswith(b"HTTP/1.1 200")
    assert took < 2.5


def test_the_server_section_parses_and_defaults_are_safe() -> None:
    default = ServerConfig()
    assert default.max_inflight_requests >= 64
    assert default.min_body_rate_bytes_per_second > 0
    assert default.keep_alive_timeout == min(default.header_timeout_seconds,
                                             default.idle_timeout_seconds)


# -- the forwarded-request pool --------------------------------------------------


async def test_an_exhausted_forward_pool_is_a_503() -> None:
    """One pooled connection, held by a request the peer never answers: the
    next request waits the pool timeout, then is refused."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                pass

    peers = PeerClient(None, max_connections=1, pool_timeout=0.2, read_timeout=10)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, silent, listeners)

            async def hold() -> None:
                await peers.forward(f"127.0.0.1:{port}", "GET", "/api/v1/blobs/a", [],
                                    None, via="n1")

            nursery.start_soon(hold)
            await trio.sleep(0.1)
            start = trio.current_time()
            with pytest.raises(ForwardPoolExhausted) as caught:
                await peers.forward(f"127.0.0.1:{port}", "GET", "/api/v1/blobs/b", [], None,
                                    via="n1")
            assert 0.15 <= trio.current_time() - start < 2
            assert caught.value.code == "busy"
            nursery.cancel_scope.cancel()
    finally:
        await peers.aclose()


async def _get_healthz(stream: trio.SocketStream) -> bytes:
    await stream.send_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            data = await stream.receive_some(65536)
            if not data:
                break
            received += data
    return received


async def test_connections_beyond_the_cap_get_503_and_are_closed(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "data")
    # hypercorn notices a client's close of an idle keep-alive connection
    # only when its keep-alive timer ends, so the place frees up then.
    server = replace(SERVER, max_connections=2)
    config = NodeConfig(cluster=replace(config.cluster, server=server), spec=config.spec)
    async with Node(config) as node:
        port = node.address.port
        first = await trio.open_tcp_stream("127.0.0.1", port)
        second = await trio.open_tcp_stream("127.0.0.1", port)
        # Both held connections are served (and stay open: keep-alive).
        assert (await _get_healthz(first)).startswith(b"HTTP/1.1 200")
        assert (await _get_healthz(second)).startswith(b"HTTP/1.1 200")
        async with await trio.open_tcp_stream("127.0.0.1", port) as third:
            await third.send_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            _, refused = await _until_closed(third, 5)
        assert refused.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in refused and b'"busy"' in refused
        await first.aclose()
        # A place is free again once a held connection closes.
        with trio.fail_after(5):
            while True:
                async with await trio.open_tcp_stream("127.0.0.1", port) as again:
                    answer = await _get_healthz(again)
                if answer.startswith(b"HTTP/1.1 200"):
                    break
                await trio.sleep(0.05)
        await second.aclose()
