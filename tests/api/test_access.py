"""Client tokens (`rimio.api.access`): the middleware alone, then in front of a real node."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from rimio.api.access import AccessControl, bearer_token, token_digest, with_access
from rimio.config import AccessConfig, AccessToken, Scope, single_node_config
from rimio.core.frames import Status
from rimio.node import Node
from rimio.testing import LocalCluster

WRITER = "rimio_writer-secret-token"
READER = "rimio_reader-secret-token"
TOKENS = (AccessToken("app", token_digest(WRITER), Scope.WRITE),
          AccessToken("dash", token_digest(READER), Scope.READ))


class Recorder:
    """An ASGI app that answers 200 and remembers the requests it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, method: str, path: str, token: str | None = None,
                headers: list[tuple[bytes, bytes]] | None = None,
                raw_path: bytes | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    hdrs = list(headers or [])
    if token is not None:
        hdrs.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "method": method, "path": path,
             "raw_path": raw_path if raw_path is not None else path.encode(),
             "query_string": b"", "headers": hdrs}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return (start["status"], dict(start["headers"]),
            b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.fixture
def inner() -> Recorder:
    return Recorder()


@pytest.fixture
def app(inner: Recorder) -> AccessControl:
    return AccessControl(inner, TOKENS)


async def test_no_token_or_unknown_token_is_401_with_a_bearer_challenge(
        app: AccessControl, inner: Recorder) -> None:
    for token in (None, "not-a-token", ""):
        status, headers, body = await _call(app, "GET", "/api/v1/blobs/a", token)
        assert status == 401
        assert headers[b"www-authenticate"].startswith(b"Bearer")
        assert b'"code": "unauthorized"' in body
    status, headers, _ = await _call(app, "GET", "/api/v1/nodes",
                                     headers=[(b"authorization", f"Basic {WRITER}".encode())])
    assert status == 401
    assert inner.seen == []


async def test_read_token_reads_but_may_not_write(app: AccessControl, inner: Recorder) -> None:
    for method in ("GET", "HEAD"):
        assert (await _call(app, method, "/api/v1/blobs/a", READER))[0] == 200
    for method in ("PUT", "DELETE", "POST"):
        status, headers, body = await _call(app, method, "/api/v1/blobs/a", READER,
                                            headers=[(b"content-length", b"3")])
        assert status == 403 and b'"code": "forbidden"' in body
        assert headers[b"connection"] == b"close"  # the unread body spoils the connection
    assert inner.seen == ["GET /api/v1/blobs/a", "HEAD /api/v1/blobs/a"]


async def test_write_token_does_everything(app: AccessControl, inner: Recorder) -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        assert (await _call(app, method, "/api/v1/blobs/a", WRITER))[0] == 200
    # the scheme is case-insensitive, as HTTP says
    status, _, _ = await _call(app, "GET", "/api/v1/nodes",
                               headers=[(b"Authorization", f"bearer {WRITER}".encode())])
    assert status == 200


async def test_healthz_and_internal_routes_are_not_token_checked(
        app: AccessControl, inner: Recorder) -> None:
    assert (await _call(app, "GET", "/api/v1/healthz"))[0] == 200
    assert (await _call(app, "POST", "/internal/v1/gossip/packet"))[0] == 200
    # everything else is refused by default, and no dot segment escapes the check
    assert (await _call(app, "GET", "/api/v1/healthz/../blobs/a"))[0] == 401
    assert (await _call(app, "GET", "/internal/../api/v1/blobs/a"))[0] == 401
    assert (await _call(app, "GET", "/internal/v1/heads",
                        raw_path=b"/api/v1/blobs/a"))[0] == 401
    assert (await _call(app, "GET", "/"))[0] == 401
    assert (await _call(app, "GET", "/api/v1"))[0] == 401
    assert inner.seen == ["GET /api/v1/healthz", "POST /internal/v1/gossip/packet"]


async def test_lifespan_and_no_tokens_pass_through(inner: Recorder) -> None:
    assert with_access(inner, None) is inner
    assert with_access(inner, ()) is inner
    assert isinstance(with_access(inner, TOKENS), AccessControl)
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await AccessControl(app, TOKENS)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_digests_are_compared_in_constant_time_against_every_entry(
        app: AccessControl, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("rimio.api.access.hmac.compare_digest", spy)
    assert app.match(WRITER.encode()) == TOKENS[0]  # matches the first entry ...
    presented = hashlib.sha256(WRITER.encode()).digest()
    # ... and still compares the rest: which entry matched does not show in the time
    assert calls == [(presented, TOKENS[0].sha256), (presented, TOKENS[1].sha256)]
    calls.clear()
    assert app.match(b"wrong") is None
    assert [b for _, b in calls] == [t.sha256 for t in TOKENS]
    assert all(len(a) == 32 for a, _ in calls)  # digests, never the raw token


def test_bearer_token_parsing() -> None:
    def scope(value: bytes) -> dict[str, Any]:
        return {"headers": [(b"authorization", value)]}

    assert bearer_token(scope(b"Bearer abc")) == b"abc"
    assert bearer_token(scope(b"BEARER   abc  ")) == b"abc"
    assert bearer_token(scope(b"Bearer ")) is None
    assert bearer_token(scope(b"Basic abc")) is None
    assert bearer_token({"headers": []}) is None


async def test_tokens_never_appear_in_logs(app: AccessControl,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _call(app, "PUT", "/api/v1/blobs/a", READER)
    await _call(app, "GET", "/api/v1/blobs/a", WRITER + "x")
    await _call(app, "GET", "/api/v1/blobs/a")
    text = caplog.text
    assert "'dash'" in text  # the name is what a log shows
    for secret in (READER, WRITER, token_digest(READER).hex(), token_digest(WRITER).hex()):
        assert secret not in text


# -- in front of a real node ------------------------------------------------------


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Node]:
    config = single_node_config(tmp_path / "data")
    cluster = dataclasses.replace(config.cluster, access=AccessConfig(TOKENS))
    async with Node(dataclasses.replace(config, cluster=cluster)) as node:
        yield node


async def test_a_node_with_access_checks_every_public_route(
        guarded: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    writer = {"Authorization": f"Bearer {WRITER}"}
    reader = {"Authorization": f"Bearer {READER}"}
    async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as client:
        assert (await client.get("/api/v1/healthz")).status_code == 200
        for path in ("/api/v1/nodes", "/api/v1/blobs/a", "/api/v1/blobs",
                     "/api/v1/slots/resolve?path=a"):
            r = await client.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
        r = await client.put("/api/v1/blobs/a", content=b"hello", headers=reader)
        assert r.status_code == 403
        r = await client.put("/api/v1/blobs/a", content=b"hello", headers=writer)
        assert r.status_code == 201
        r = await client.get("/api/v1/blobs/a", headers=reader)
        assert r.status_code == 200 and r.content == b"hello"
        assert (await client.get("/api/v1/nodes", headers=reader)).status_code == 200
        assert (await client.delete("/api/v1/blobs/a", headers=reader)).status_code == 403
        assert (await client.delete("/api/v1/blobs/a", headers=writer)).status_code in (200, 204)
    assert WRITER not in caplog.text and READER not in caplog.text


async def test_a_node_without_access_says_once_that_its_api_is_open(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Node(single_node_config(tmp_path / "data")) as node, \
            httpx.AsyncClient(base_url=node.url) as client:
        assert (await client.get("/api/v1/nodes")).status_code == 200
    warnings = [r for r in caplog.records if "no access section" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_forwarded_requests_carry_the_token(tmp_path: Path) -> None:
    """One replica per slot: most paths live on another node than the one asked."""
    cluster = LocalCluster(tmp_path, 3, transport="memory", replicas=1)
    cluster.cluster = dataclasses.replace(cluster.cluster, access=AccessConfig(TOKENS))
    writer = {"Authorization": f"Bearer {WRITER}"}
    reader = {"Authorization": f"Bearer {READER}"}
    async with cluster as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        entry = c.nodes["node-1"]
        paths = [f"k/{i}" for i in range(12)]
        assert any(entry.objects.resolve(p).replicas[0] != "node-1"  # type: ignore[union-attr]
                   for p in paths)
        async with httpx.AsyncClient(base_url=entry.url, timeout=30) as client:
            for path in paths:
                r = await client.put(f"/api/v1/blobs/{path}", content=b"x", headers=writer)
                assert r.status_code == 201, (path, r.text)
                r = await client.get(f"/api/v1/blobs/{path}", headers=reader)
                assert r.status_code == 200, (path, r.text)
                r = await client.delete(f"/api/v1/blobs/{path}", headers=reader)
                assert r.status_code == 403
