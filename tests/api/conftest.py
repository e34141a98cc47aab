"""Fixtures of the API tests: a node over real HTTP (`node`, `client`), and
`AsgiClient`, a small ASGI-level test client (`asgi_client` is the class).

`AsgiClient` drives an ASGI app with exactly the scope, body chunks and
disconnects a test asks for, and records what the app sent. Unlike quart's
test client it sends the raw target untouched (`..`, `%FF`), keeps the headers
the app set (a HEAD's Content-Length), and can play a client that goes away in
the middle of its upload.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import trio

from rimio.api.app import NodeView
from rimio.api.asgi_blobs import INLINE_READ
from rimio.cluster.layout import LAYOUT_FILE, LayoutService, founding_layout
from rimio.cluster.membership import MembershipService
from rimio.config import StorageConfig, single_node_config
from rimio.node import Node
from rimio.ops.objects import ObjectService
from rimio.storage.store import LocalStore
from rimio.testing import MemoryTransport

PART = 4096
MAX_OBJECT = 256 * 1024


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = single_node_config(
        tmp_path / "data",
        storage=StorageConfig(part_size_bytes=PART, max_object_bytes=MAX_OBJECT),
    )
    async with Node(config) as n:
        yield n


# The handler tests' node: large parts keep a streamed read to a few chunks.
HANDLER_PART = 512 * 1024
HANDLER_MAX_OBJECT = 4 * INLINE_READ


@pytest.fixture
async def view(tmp_path: Path) -> AsyncIterator[NodeView]:
    """What the routes see of a node: a real `ObjectService` over a real
    `LocalStore` in tmp_path, and a membership service that is built but
    never started (no server)."""
    config = single_node_config(
        tmp_path / "data",
        storage=StorageConfig(part_size_bytes=HANDLER_PART, max_object_bytes=HANDLER_MAX_OBJECT),
    )
    store = LocalStore(config.spec.disks, total_slots=config.cluster.replication.total_slots,
                       part_size=HANDLER_PART)
    await store.open()
    try:
        objects = ObjectService(config, store)
        address = "127.0.0.1:7000"
        membership = MembershipService(config.cluster.swim_config(), "node-1", address,
                                       MemoryTransport(address, lambda _: None))
        layout = LayoutService("node-1", founding_layout(config.cluster),
                               cluster=config.cluster.name,
                               state_file=tmp_path / "data" / LAYOUT_FILE)
        yield NodeView(node_id="node-1", cluster=config.cluster, address=address,
                       objects=objects, membership=membership, layout=layout)
    finally:
        await store.close()


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as c:
        yield c


@dataclass
class Answer:
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)  # any case
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False  # the app sent its last body message

    @property
    def status_code(self) -> int:
        return self.status

    def json(self) -> Any:
        return json.loads(self.body)


class AsgiClient:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(self, method: str, target: str, body: bytes | Sequence[bytes] = b"",
                      headers: dict[str, str] | None = None, *,
                      disconnect_after_body: bool = False) -> Answer:
        """One request. `body` is one chunk or a list of chunks; with
        `disconnect_after_body` the client goes away after its chunks (sent
        as `more_body`), without finishing the body."""
        chunks = [body] if isinstance(body, bytes) else list(body)
        raw_path, _, query = target.encode("latin-1").partition(b"?")
        hdrs = {"host": "test"} | {k.lower(): v for k, v in (headers or {}).items()}
        if method in ("PUT", "POST", "PATCH") or any(chunks):
            hdrs.setdefault("content-length", str(sum(len(c) for c in chunks)))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7000),
            "extensions": {}, "state": {},
        }
        answer = Answer()
        done = trio.Event()
        pending = list(chunks)

        async def receive() -> dict[str, Any]:
            if pending:
                chunk = pending.pop(0)
                more = bool(pending) or disconnect_after_body
                return {"type": "http.request", "body": chunk, "more_body": more}
            if not disconnect_after_body:
                await done.wait()  # a client that stays until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.raw_headers = list(message.get("headers", []))
                answer.headers = httpx.Headers(answer.raw_headers)
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if not message.get("more_body", False):
                    answer.complete = True
                    done.set()

        await self.app(scope, receive, send)
        done.set()
        return answer

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Answer:
        return await self.request("GET", target, headers=headers)

    async def head(self, target: str, headers: dict[str, str] | None = None) -> Answer:
        return await self.request("HEAD", target, headers=headers)

    async def put(self, target: str, body: bytes | Sequence[bytes] = b"",
                  headers: dict[str, str] | None = None) -> Answer:
        return await self.request("PUT", target, body, headers)

    async def delete(self, target: str, headers: dict[str, str] | None = None) -> Answer:
        return await self.request("DELETE", target, headers=headers)


@pytest.fixture
def asgi_client() -> type[AsgiClient]:
    return AsgiClient
