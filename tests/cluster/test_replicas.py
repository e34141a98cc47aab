"""`HttpReplica` against real nodes on loopback: the replica protocol over the
signed internal API (RFC 0011 §5), its error mapping, and its refusals."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import httpx
import msgpack
import pytest

from rimio.cluster.peers import PeerClient
from rimio.cluster.replicas import HttpReplica
from rimio.config import StorageConfig
from rimio.core.auth import sign
from rimio.core.head import Head
from rimio.core.replica import PartInfo, PartMissing, ReplicaUnavailable, StaleLayout
from rimio.core.replica_wire import Offer, encode_offer
from rimio.core.slots import slot_for_path
from rimio.node import Node
from rimio.testing import LocalCluster, free_port

# Higher than any layout version these small clusters reach: requests are never stale.
LATEST = 1_000_000
PART = 64 * 1024
SLOTS = 2048  # the default


def _head(data: bytes, generation: int, path: str = "a/b", *, write_id: str = "w",
          ts: float = 1.0) -> Head:
    return Head(kind="meta", path=path, slot_id=slot_for_path(path, SLOTS),
                generation=generation, write_id=write_id, size_bytes=len(data),
                etag=hashlib.sha256(data).hexdigest(), part_size=PART,
                part_count=-(-len(data) // PART), timestamp=ts)


async def _chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _cluster(tmp_path: Path, size: int = 2) -> LocalCluster:
    c = LocalCluster(tmp_path, size, transport="memory")
    c.cluster = replace(c.cluster, storage=StorageConfig(gc_interval_seconds=3600.0,
                                                         part_size_bytes=PART,
                                                         inline_max_bytes=4096))
    return c


async def _upload(replica: HttpReplica, head: Head, data: bytes) -> list[PartInfo]:
    pieces = [data[i:i + PART] for i in range(0, len(data), PART)]
    infos = [await replica.put_part(head.slot_id, head.path, head.generation, i,
                                    _chunks(pieces[i])) for i in reversed(range(len(pieces)))]
    return sorted(infos, key=lambda p: p.index)


async def _read(replica: HttpReplica, head: Head, index: int, start: int, end: int) -> bytes:
    return b"".join([c async for c in replica.read_part(head, index, start, end)])


async def test_the_whole_protocol_against_a_real_node(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as c:
        target = c.nodes["node-2"]
        client = PeerClient(c.cluster.keyring())
        try:
            remote = HttpReplica("node-2", str(target.address), client)
            data = os.urandom(3 * PART + 123)
            assert target.objects is not None
            path = next(p for p in (f"ünï/cöde path {i}" for i in range(100))
                        if target.objects.resolve(p).replicas == ("node-2",))
            head = _head(data, 3, path)
            parts = await _upload(remote, head, data)
            assert [p.sha256 for p in parts] == [
                hashlib.sha256(data[i:i + PART]).hexdigest() for i in range(0, len(data), PART)]
            assert (await remote.get_head(head.slot_id, head.path)).head is None
            answer = await remote.apply_head(head, parts, None, {"generation": 3, "x": None}, LATEST)
            assert answer.applied and answer.current == head
            got = await remote.get_head(head.slot_id, head.path, "w")
            assert got.head == head and got.write_result == {"generation": 3, "x": None}
            # the same head again: applied, nothing changes
            assert (await remote.apply_head(head, parts, None, None, LATEST)).applied
            # ranges of parts, streamed back
            assert await _read(remote, head, 0, 0, PART) == data[:PART]
            assert await _read(remote, head, 3, 100, 123) == data[3 * PART + 100:]
            assert await _read(remote, head, 1, 5, 5) == b""
            # it is the node's own object: the public API serves it
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{c.nodes['node-1'].url}/api/v1/blobs/{path}")
            assert r.status_code == 200 and r.content == data
            # a lower generation loses; a tombstone at a higher one wins
            low = _head(b"tiny", 2, head.path)
            answer = await remote.apply_head(low, [], b"tiny", None, LATEST)
            assert not answer.applied and answer.current == head
            tomb = Head(kind="tombstone", path=head.path, slot_id=head.slot_id, generation=4,
                        write_id="d", timestamp=3.0)
            assert (await remote.apply_head(tomb, [], None, None, LATEST)).applied
            listed = await remote.list_heads(head.slot_id, "", None, 10)
            assert listed == [tomb]
            assert tomb in await remote.list_heads(None, "ünï/", None, 10)
            # inline objects travel in the offer
            small = _head(b"hello", 5, head.path)
            assert (await remote.apply_head(small, [], b"hello", None, LATEST)).applied
            assert await _read(remote, small, 0, 1, 4) == b"ell"
            # an abort removes the uploads of a generation that will not commit
            await _upload(remote, _head(data, 9, head.path), data)
            await remote.abort(head.slot_id, head.path, 9)
            assert target.store.recovered_writes == 0
            with pytest.raises(PartMissing):
                await remote.apply_head(_head(data, 9, head.path), parts, None, None, LATEST)
        finally:
            await client.aclose()


async def test_errors_are_named_for_the_coordinator(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as c:
        target = c.nodes["node-2"]
        client = PeerClient(c.cluster.keyring(), connect_timeout=0.5)
        try:
            remote = HttpReplica("node-2", str(target.address), client)
            data = os.urandom(PART + 1)
            head = _head(data, 1)
            with pytest.raises(PartMissing):
                await _read(remote, head, 0, 0, 10)
            with pytest.raises(PartMissing):
                await remote.apply_head(head, [PartInfo(0, "a" * 64, PART),
                                               PartInfo(1, "b" * 64, 1)], None, None, LATEST)
            assert target.layout is not None
            # the replica's layout moves on: requests under older versions are stale
            target.layout.check_version = (  # type: ignore[method-assign]
                lambda v: LATEST + 1 if v <= LATEST else None)
            with pytest.raises(StaleLayout) as stale:
                await remote.apply_head(head, [], None, None, LATEST)
            assert stale.value.replica_version == LATEST + 1
            answer = await remote.apply_head(_head(b"ok", 1), [], b"ok", None, LATEST + 1)
            assert answer.applied
            # a request the replica refuses (a bad offer) is not the caller's fault to retry
            with pytest.raises(ReplicaUnavailable, match="400"):
                await remote.apply_head(_head(b"ok", 2), [], b"not ok", None, LATEST + 1)
            nobody = HttpReplica("node-9", f"127.0.0.1:{free_port()}", client)
            with pytest.raises(ReplicaUnavailable, match="unreachable"):
                await nobody.get_head(head.slot_id, head.path)
            # the wrong node at an address: its signature is for someone else
            wrong = HttpReplica("node-1", str(target.address), client)
            with pytest.raises(ReplicaUnavailable, match="401"):
                await wrong.get_head(head.slot_id, head.path)
        finally:
            await client.aclose()


async def test_requests_without_the_key_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as c:
        target = c.nodes["node-2"]
        keyless = PeerClient(None)
        try:
            remote = HttpReplica("node-2", str(target.address), keyless)
            data = os.urandom(100)
            head = _head(data, 1)
            with pytest.raises(ReplicaUnavailable, match="401"):
                await remote.put_part(head.slot_id, head.path, 1, 0, _chunks(data))
            with pytest.raises(ReplicaUnavailable, match="401"):
                await remote.apply_head(head, [], data, None, LATEST)
            with pytest.raises(ReplicaUnavailable, match="401"):
                await remote.get_head(head.slot_id, head.path)
            with pytest.raises(ReplicaUnavailable, match="401"):
                await remote.restore_part(head, 0, _chunks(data))
            assert not list((tmp_path / "node-2").rglob("part.*"))
            assert (await target.replica.get_head(head.slot_id, head.path)).head is None
        finally:
            await keyless.aclose()


async def test_every_bad_input_is_a_clear_4xx(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as c:
        target = c.nodes["node-2"]
        key = c.cluster.keyring()
        assert key is not None
        path = "x/y"
        slot = slot_for_path(path, SLOTS)

        async def call(method: str, target_: str, body: bytes = b"",
                       headers: dict[str, str] | None = None) -> httpx.Response:
            signed = sign(key.primary_mac_key, method, target_, body, time.time(),
                          destination="node-2")
            async with httpx.AsyncClient() as http:
                return await http.request(method, f"{target.url}{target_}", content=body,
                                          headers={**signed, **(headers or {})})

        base = f"/internal/v1/slots/{slot}"
        good = {"path": path, "generation": "1", "index": "0"}
        cases = [
            ("GET", "/internal/v1/slots/abc/head?path=x", b"", None, 400),
            ("GET", f"{base}/head", b"", None, 400),
            ("GET", f"{base}/head?path=/x//y", b"", None, 400),
            ("GET", f"/internal/v1/slots/{(slot + 1) % SLOTS}/head?path={path}", b"", None, 400),
            ("GET", f"/internal/v1/slots/99999/head?path={path}", b"", None, 400),
            ("PUT", f"{base}/parts?{urlencode({**good, 'generation': '0'})}", b"x", None, 400),
            ("PUT", f"{base}/parts?{urlencode({**good, 'index': '-1'})}", b"x", None, 400),
            ("PUT", f"{base}/parts?{urlencode({**good, 'generation': '9' * 19})}", b"x", None,
             400),
            ("DELETE", f"{base}/parts?path={path}&generation={'9' * 19}", b"", None, 400),
            ("GET", f"{base}/parts/{'9' * 19}?path={path}&generation=1&head={'a' * 64}", b"",
             None, 400),
            ("POST", f"{base}/heads", encode_offer(Offer(_head(b"z", 2**63, path), (), b"z")),
             {"X-Rimio-Layout-Version": str(LATEST)}, 400),
            ("POST", f"{base}/heads", encode_offer(Offer(_head(b"z", 1, path, ts=float("nan")),
                                                         (), b"z")),
             {"X-Rimio-Layout-Version": str(LATEST)}, 400),
            ("PUT", f"{base}/parts?{urlencode(good)}", b"x" * (PART + 1), None, 413),
            ("PUT", f"{base}/parts?{urlencode(good)}", b"", None, 400),
            ("POST", f"{base}/heads", b"\xc1garbage", {"X-Rimio-Layout-Version": str(LATEST)}, 400),
            ("POST", f"{base}/heads", msgpack.packb({"head": 1}), {"X-Rimio-Layout-Version": str(LATEST)},
             400),
            ("POST", f"{base}/heads", encode_offer(Offer(_head(b"z", 1, path), (), b"z")), None,
             400),
            ("POST", f"{base}/heads", encode_offer(Offer(_head(b"z", 1, path), (), b"z")),
             {"X-Rimio-Layout-Version": "1.5"}, 400),
            ("POST", f"{base}/heads", encode_offer(Offer(_head(b"z", 1, "other"), (), b"z")),
             {"X-Rimio-Layout-Version": str(LATEST)}, 400),
            ("POST", f"{base}/heads", b"\x00" * (9 << 20), {"X-Rimio-Layout-Version": str(LATEST)},
             413),
            ("DELETE", f"{base}/parts?path={path}", b"", None, 400),
            ("GET", f"{base}/parts/0?path={path}&generation=1&head=zz", b"", None, 400),
            ("GET", f"{base}/parts/x?path={path}&generation=1&head={'a' * 64}", b"", None, 400),
            ("GET", f"{base}/parts/0?path={path}&generation=1&head={'a' * 64}", b"",
             {"Range": "bytes=5-1"}, 400),
            ("GET", f"{base}/parts/0?path={path}&generation=1&head={'a' * 64}", b"",
             {"Range": "items=0-1"}, 400),
            ("GET", f"{base}/parts/0?path={path}&generation=1&head={'a' * 64}", b"", None, 404),
            ("GET", f"{base}/heads?limit=0", b"", None, 400),
            # the single-part restore (RFC 0017)
            ("PUT", f"{base}/parts/0?path={path}&generation=1&head=zz", b"x", None, 400),
            ("PUT", f"{base}/parts/0?path={path}&generation=0&head={'a' * 64}", b"x", None, 400),
            ("PUT", f"{base}/parts/x?path={path}&generation=1&head={'a' * 64}", b"x", None, 400),
            ("PUT", f"{base}/parts/{'9' * 12}?path={path}&generation=1&head={'a' * 64}", b"x",
             None, 400),
            ("PUT", f"{base}/parts/0?generation=1&head={'a' * 64}", b"x", None, 400),
            ("PUT", f"{base}/parts/0?path={path}&generation=1&head={'a' * 64}", b"x" * (PART + 1),
             None, 413),
            ("PUT", f"{base}/parts/0?path={path}&generation=1&head={'a' * 64}", b"x", None, 404),
        ]
        for method, target_, body, headers, status in cases:
            r = await call(method, target_, body, headers)
            assert r.status_code == status, (method, target_, r.status_code, r.text)
            if status != 404 or r.content:
                assert r.json()["error"]["code"]
        # a streamed digest is refused where the body is checked
        signed = sign(key.primary_mac_key, "POST", f"{base}/heads", None,
                      time.time(), destination="node-2")
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{target.url}{base}/heads", content=b"x",
                                headers={**signed, "X-Rimio-Layout-Version": str(LATEST)})
        assert r.status_code == 401
        assert not list((tmp_path / "node-2").rglob("part.*"))


async def test_a_node_on_port_zero_serves_the_replica_routes(tmp_path: Path) -> None:
    from rimio.config import Address, single_node_config

    config = single_node_config(tmp_path / "data", bind=Address("127.0.0.1", 0))
    async with Node(config) as node:
        client = PeerClient(node.keyring)
        try:
            remote = HttpReplica(node.node_id, str(node.address), client)
            data = os.urandom(20_000)
            head = Head(kind="meta", path="p", slot_id=slot_for_path("p", SLOTS), generation=1,
                        write_id="", size_bytes=len(data),
                        etag=hashlib.sha256(data).hexdigest(),
                        part_size=config.cluster.storage.part_size_bytes, part_count=1,
                        timestamp=1.0)
            part = await remote.put_part(head.slot_id, "p", 1, 0, _chunks(data))
            assert (await remote.apply_head(head, [part], None, None, LATEST)).applied
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{node.url}/api/v1/blobs/p")
            assert r.status_code == 200 and r.content == data
        finally:
            await client.aclose()


async def test_seeded_random_requests_never_get_a_500(tmp_path: Path) -> None:
    """Signed requests with random parameters, headers and bodies: every
    answer is a success or a 4xx, never a 5xx."""
    import random

    rng = random.Random(7)
    values = ["", "0", "1", "-1", "x", "/a//b", "a/b", "²", "99999999999999999999", "a" * 64,
              "%00", "ü", "1.5", " 2"]
    async with _cluster(tmp_path) as c:
        target = c.nodes["node-2"]
        key = c.cluster.keyring()
        assert key is not None
        slot = str(slot_for_path("a/b", SLOTS))
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                method, route = rng.choice([("GET", "head"), ("PUT", "parts"),
                                            ("DELETE", "parts"), ("POST", "heads"),
                                            ("GET", "heads"), ("GET", "parts/0"),
                                            ("GET", f"parts/{rng.choice(values)}"),
                                            ("PUT", "parts/0"),
                                            ("PUT", f"parts/{rng.choice(values)}")])
                query = urlencode({k: rng.choice(values) for k in rng.sample(
                    ["path", "generation", "index", "head", "write_id", "prefix", "after",
                     "limit"], rng.randint(0, 5))})
                target_ = (f"/internal/v1/slots/{rng.choice([slot, slot, *values[:5]])}/{route}"
                           f"?{query}")
                body = rng.choice([b"", b"\x80", os.urandom(rng.randint(0, 300)),
                                   encode_offer(Offer(_head(b"z", 1), (), b"z"))])
                if method in ("GET", "DELETE") and rng.random() < 0.9:
                    body = b""
                headers = sign(key.primary_mac_key, method, target_, body, time.time(),
                               destination="node-2")
                if rng.random() < 0.5:
                    headers["X-Rimio-Layout-Version"] = rng.choice(values[:6])
                if rng.random() < 0.3:
                    headers["Range"] = rng.choice(["bytes=0-0", "bytes=1-", "bytes=3-2", "x"])
                r = await http.request(method, f"{target.url}{target_}", content=body,
                                       headers=headers)
                assert r.status_code < 500, (method, target_, r.status_code, r.text)


async def test_a_failing_source_is_the_callers_error_and_leaves_no_part(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as c:
        target = c.nodes["node-2"]
        client = PeerClient(c.cluster.keyring())
        try:
            remote = HttpReplica("node-2", str(target.address), client)

            async def broken() -> AsyncIterator[bytes]:
                yield b"x" * 1000
                raise ConnectionAbortedError("the client went away")

            with pytest.raises(ConnectionAbortedError):
                await remote.put_part(slot_for_path("a/b", SLOTS), "a/b", 1, 0, broken())
            await remote.abort(slot_for_path("a/b", SLOTS), "a/b", 1)
            assert not [p for p in (tmp_path / "node-2" / "slots").rglob("*") if p.is_file()]
        finally:
            await client.aclose()
