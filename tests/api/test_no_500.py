"""Requests that once answered 500, and the storage errors that would have:
each now gets the 4xx/503/507 it means."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from rimio.api.errors import answer_for, status_of
from rimio.config import NodeConfig, single_node_config
from rimio.core.errors import DiskError, InsufficientStorage, StorageCorrupt
from rimio.node import Node
from rimio.storage.meta import SlotMeta, group_file
from rimio.storage.store import LocalStore

KEY = "cd" * 32


async def test_a_limit_that_int_refuses_is_a_400(client: httpx.AsyncClient) -> None:
    for limit in ("%C2%B2", "%D9%A3", "1%C2%B2", "-1", "0x10", "9999999999"):
        r = await client.get(f"/api/v1/blobs?limit={limit}")
        assert r.status_code == 400, limit
        assert r.json()["error"]["code"] == "bad_request"


async def test_a_put_that_reuses_a_deletes_write_id_is_a_409(client: httpx.AsyncClient) -> None:
    assert (await client.put("/api/v1/blobs/a", content=b"one")).status_code == 201
    r = await client.delete("/api/v1/blobs/a", headers={"X-Rimio-Write-Id": "w-1"})
    assert r.status_code == 200 and "operation" not in r.json()
    r = await client.put("/api/v1/blobs/a", content=b"two", headers={"X-Rimio-Write-Id": "w-1"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"
    # nothing was written: the object is still deleted
    assert (await client.get("/api/v1/blobs/a")).status_code == 410
    # the delete itself still replays
    r = await client.delete("/api/v1/blobs/a", headers={"X-Rimio-Write-Id": "w-1"})
    assert r.status_code == 200 and r.json()["idempotent_replay"] is True


async def test_a_delete_that_reuses_a_puts_write_id_is_a_409(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/v1/blobs/b", content=b"x", headers={"X-Rimio-Write-Id": "w-2"})
    assert r.status_code == 201 and "operation" not in r.json()
    r = await client.delete("/api/v1/blobs/b", headers={"X-Rimio-Write-Id": "w-2"})
    assert r.status_code == 409
    assert (await client.get("/api/v1/blobs/b")).content == b"x"
    r = await client.put("/api/v1/blobs/b", content=b"x", headers={"X-Rimio-Write-Id": "w-2"})
    assert r.status_code == 200 and r.json()["idempotent_replay"] is True
    assert "operation" not in r.json()


@pytest.fixture
async def keyed_node(tmp_path: Path) -> AsyncIterator[Node]:
    key_file = tmp_path / "cluster.key"
    key_file.write_text(KEY + "\n")
    config = single_node_config(tmp_path / "data")
    config = NodeConfig(cluster=replace(config.cluster, key_file=key_file), spec=config.spec)
    async with Node(config) as n:
        yield n


@pytest.mark.parametrize("value", [b"\xff\xfe", "é".encode("latin-1"), "ключ".encode()])
async def test_a_non_ascii_signature_is_refused_not_a_fault(keyed_node: Node,
                                                            value: bytes) -> None:
    async with httpx.AsyncClient(base_url=keyed_node.url, timeout=30) as c:
        for header in ("X-Rimio-Signature", "X-Rimio-Timestamp", "X-Rimio-Nonce"):
            r = await c.post("/internal/v1/gossip/packet", content=b"",
                             headers=[(header.encode(), value)])
            assert r.status_code == 401, (header, r.status_code)


def test_storage_errors_answer_503_and_507() -> None:
    assert status_of(DiskError("disk error: EIO")) == 503
    assert status_of(InsufficientStorage("full")) == 507


class _Failing:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise self.exc


@pytest.mark.parametrize(("exc", "expected", "status"), [
    (sqlite3.OperationalError("database or disk is full"), InsufficientStorage, 507),
    (sqlite3.OperationalError("disk I/O error"), DiskError, 503),
    (sqlite3.OperationalError("database is locked"), DiskError, 503),
    (sqlite3.DatabaseError("database disk image is malformed"), DiskError, 503),
    (OSError(errno.ENOSPC, "No space left on device"), InsufficientStorage, 507),
    (OSError(errno.EIO, "Input/output error"), DiskError, 503),
])
async def test_sqlite_and_os_errors_leave_storage_as_storage_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException,
        expected: type[Exception], status: int) -> None:
    store = LocalStore([tmp_path], total_slots=16, part_size=4096)
    await store.open()
    try:
        monkeypatch.setattr(SlotMeta, "current_head", _Failing(exc))
        with pytest.raises(expected) as caught:
            await store.current_head(3, "x")
        assert answer_for(caught.value).status == status
    finally:
        monkeypatch.undo()
        await store.close()


async def test_sqlite_error_codes_are_read_when_present(tmp_path: Path) -> None:
    """A real SQLite error carries its code: a file that is not a database is
    corruption, not a passing I/O error."""
    group = group_file(tmp_path, 5)
    group.parent.mkdir(parents=True)
    group.write_bytes(b"not a database" * 100)
    store = LocalStore([tmp_path], total_slots=16, part_size=4096)
    try:
        with pytest.raises(StorageCorrupt):
            await store.open()
    finally:
        await store.close()
