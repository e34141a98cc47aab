"""The lean ASGI path of the object routes: the dispatcher, 405s, HEAD lengths,
errors (also inside exception groups), unread bodies, clients that go away,
and the overlapped streaming of large reads. Driven by `AsgiClient`."""

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio

from rimio.api.app import NodeView, create_app
from rimio.api.asgi_blobs import INLINE_READ, BlobApp
from rimio.api.asgi_io import _overlapped
from rimio.api.dispatch import NodeApp
from rimio.core.errors import NotFound, RangeNotSatisfiable
from rimio.ops.objects import PutRequest

Client = Any  # `AsgiClient` of conftest.py


@pytest.fixture
def client(view: NodeView, asgi_client: Any) -> Client:
    return asgi_client(create_app(view))


class _Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_dispatcher_sends_object_requests_to_the_lean_path(asgi_client: Any) -> None:
    blobs, rest = _Recorder(), _Recorder()
    c = asgi_client(NodeApp(blobs, rest))
    for target in ("/api/v1/blobs/a", "/api/v1/blobs/", "/api/v1/blobs%2Fx", "/api/v1/blobs/a/b?x=1"):
        await c.get(target)
    for target in ("/api/v1/blobs", "/api/v1/blobs?prefix=a", "/api/v1/healthz",
                   "/internal/v1/heads", "//api/v1/blobs/a"):
        await c.get(target)
    assert blobs.paths == ["/api/v1/blobs/a", "/api/v1/blobs/", "/api/v1/blobs/x",
                           "/api/v1/blobs/a/b"]
    assert rest.paths == ["/api/v1/blobs", "/api/v1/blobs", "/api/v1/healthz",
                          "/internal/v1/heads", "//api/v1/blobs/a"]
    await NodeApp(blobs, rest)({"type": "lifespan", "path": ""}, None, None)  # type: ignore[arg-type]
    assert len(rest.paths) == 6  # lifespan events go to quart


async def test_create_app_composes_both(view: NodeView) -> None:
    app = create_app(view)
    assert isinstance(app.blobs, BlobApp) and isinstance(app.rest, QuartTrio)


@pytest.mark.parametrize("method", ["POST", "PATCH", "OPTIONS", "TRACE"])
async def test_other_methods_are_405_json(client: Client, method: str) -> None:
    r = await client.request(method, "/api/v1/blobs/x")
    assert r.status == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-length"] == str(len(r.body))
    r = await client.request(method, "/api/v1/blobs/x", [b"abc", b"def"])
    assert r.status == 405 and r.headers["connection"] == "close"  # body left unread


async def test_head_announces_get_lengths(client: Client) -> None:
    data = os.urandom(INLINE_READ + 10)
    await client.put("/api/v1/blobs/h", data)
    await client.put("/api/v1/blobs/empty", b"")
    for target, headers, length in (("/api/v1/blobs/h", {}, len(data)),
                                    ("/api/v1/blobs/h", {"Range": "bytes=5-9"}, 5),
                                    ("/api/v1/blobs/empty", {}, 0)):
        get = await client.get(target, headers)
        head = await client.head(target, headers)
        assert head.status == get.status and head.body == b""
        assert head.headers["content-length"] == get.headers["content-length"] == str(length)
        assert len(get.body) == length
    missing = await client.head("/api/v1/blobs/nope")
    assert missing.status == 404 and missing.body == b""
    assert int(missing.headers["content-length"]) > 0  # the length of the JSON a GET gets


async def test_errors_inside_exception_groups_keep_their_status(
        view: NodeView, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    async def grouped(path: str, inline: int = -1) -> Any:
        raise ExceptionGroup("nursery", [ExceptionGroup("inner", [RangeNotSatisfiable("no", 7)])])

    monkeypatch.setattr(view.objects, "open_read", grouped)
    r = await client.get("/api/v1/blobs/x")
    assert r.status == 416 and r.json()["error"]["code"] == "range_not_satisfiable"
    assert r.headers["content-range"] == "bytes */7"

    async def plain(path: str, inline: int = -1) -> Any:
        raise NotFound("gone fishing")

    monkeypatch.setattr(view.objects, "open_read", plain)
    r = await client.get("/api/v1/blobs/x")
    assert r.status == 404 and r.json()["error"]["message"] == "gone fishing"


async def test_unexpected_errors_are_500_json_and_logged(
        view: NodeView, client: Client, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(path: str, write_id: str | None = None) -> Any:
        raise ExceptionGroup("nursery", [ZeroDivisionError("oops")])

    monkeypatch.setattr(view.objects, "delete", broken)
    with caplog.at_level(logging.ERROR, logger="rimio.api"):
        r = await client.delete("/api/v1/blobs/x")
    assert r.status == 500 and r.json()["error"]["code"] == "internal_error"
    assert any(rec.exc_info and "oops" in str(rec.exc_info[1].exceptions[0])
               for rec in caplog.records)


async def test_early_answer_marks_the_connection_close(client: Client) -> None:
    h = {"X-Rimio-Write-Id": "early"}
    body = [os.urandom(256 * 1024) for _ in range(8)]  # more than the small-object path
    assert (await client.put("/api/v1/blobs/e", body, h)).status == 201
    replay = await client.put("/api/v1/blobs/e", body, h)
    assert replay.status == 200 and replay.json()["idempotent_replay"] is True
    whole = await client.put("/api/v1/blobs/f", body)
    assert whole.status == 201 and "connection" not in whole.headers
    refused = await client.put("/api/v1/blobs/g", body, {"If-None-Match": '"x"'})
    assert refused.status == 400 and refused.headers["connection"] == "close"


async def test_client_gone_mid_upload_writes_nothing_and_answers_nothing(client: Client) -> None:
    r = await client.request("PUT", "/api/v1/blobs/gone", [os.urandom(300_000)] * 5,
                             {"Content-Length": str(3_000_000)}, disconnect_after_body=True)
    assert r.status == 0 and not r.complete
    assert (await client.get("/api/v1/blobs/gone")).status == 404


async def test_body_is_pulled_only_as_the_store_reads(view: NodeView, asgi_client: Any) -> None:
    """Backpressure: the app asks for the next chunk only once it consumed the last."""
    received = 0

    async def slow_put(req: Any) -> Any:
        nonlocal received
        async for _chunk in req.body:
            received += 1
            await trio.lowlevel.checkpoint()
        raise NotFound("just counting")

    view.objects.put = slow_put  # type: ignore[method-assign]
    pulls = 0
    app = create_app(view)

    async def receive() -> dict[str, Any]:
        nonlocal pulls
        pulls += 1
        assert pulls - received <= 1, "pulled ahead of the consumer"
        return {"type": "http.request", "body": b"x" * 1000, "more_body": pulls < 20}

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "PUT", "path": "/api/v1/blobs/p",
             "raw_path": b"/api/v1/blobs/p", "query_string": b"",
             "headers": [(b"content-length", b"20000")]}
    await app(scope, receive, send)
    assert pulls == 20 and received == 20 and sent[0]["status"] == 404


async def test_overlapped_reads_ahead_by_one_chunk() -> None:
    events: list[str] = []

    async def source() -> AsyncIterator[bytes]:
        for i in range(4):
            events.append(f"read {i}")
            yield bytes([i])

    async def sink(chunk: bytes) -> None:
        events.append(f"send {chunk[0]}")
        await trio.sleep(0.01)  # a slow client: the next read happens meanwhile

    await _overlapped(source(), sink)
    assert [e for e in events if e.startswith("send")] == [f"send {i}" for i in range(4)]
    # chunk 1 was read before chunk 0's send finished (overlap), never two ahead
    assert events.index("read 1") < events.index("send 1")
    assert events.index("read 2") > events.index("send 0")


async def test_overlapped_closes_an_abandoned_source() -> None:
    closed = trio.Event()

    async def source() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
        finally:
            closed.set()

    async def sink(chunk: bytes) -> None:
        raise RuntimeError("client broke")

    with pytest.raises(BaseException):  # noqa: B017 (a group or the error itself)
        await _overlapped(source(), sink)
    assert closed.is_set()


async def test_client_gone_mid_download_stops_reading(view: NodeView) -> None:
    data = os.urandom(INLINE_READ * 3)
    app = create_app(view)
    reads = 0
    real_read = view.objects.read

    def counting_read(obj: Any, start: int, end: int) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            nonlocal reads
            async for chunk in real_read(obj, start, end):
                reads += 1
                yield chunk
        return gen()

    view.objects.read = counting_read  # type: ignore[method-assign]
    async def body() -> AsyncIterator[bytes]:
        yield data

    await view.objects.put(PutRequest("big", body(), len(data)))
    gone = trio.Event()
    chunks_sent = 0

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        nonlocal chunks_sent
        if message["type"] == "http.response.body" and message.get("body"):
            chunks_sent += 1
            gone.set()  # the client leaves after the first chunk
            await trio.sleep(0.05)

    scope = {"type": "http", "method": "GET", "path": "/api/v1/blobs/big",
             "raw_path": b"/api/v1/blobs/big", "query_string": b"", "headers": []}
    with trio.fail_after(5):
        await app(scope, receive, send)
    assert chunks_sent == 1 and reads < 3
