"""ObjectService on a real LocalStore: what a client of one node gets for
each write, read and listing, without HTTP in between."""

import hashlib
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rimio.config import NodeConfig, StorageConfig, single_node_config
from rimio.core.errors import (
    BadRequest,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)
from rimio.core.writes import Precondition
from rimio.ops.objects import SMALL_OBJECT, ObjectService, PutRequest
from rimio.storage.store import LocalStore

PART = 256 * 1024
MAX_OBJECT = 3 * 1024 * 1024
BIG = SMALL_OBJECT + PART + 17  # above the one-hop size: streamed


def _config(data: Path) -> NodeConfig:
    return single_node_config(
        data, storage=StorageConfig(part_size_bytes=PART, max_object_bytes=MAX_OBJECT))


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ObjectService]:
    config = _config(tmp_path / "d")
    storage = config.cluster.storage
    store = LocalStore(config.spec.disks, total_slots=config.cluster.replication.total_slots,
                       part_size=storage.part_size_bytes)
    await store.open()
    clock = itertools.count(1_000.0)
    yield ObjectService(config, store, wall_clock=lambda: float(next(clock)))
    await store.close()


async def _body(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i:i + chunk]


def _put(path: str, data: bytes, *, length: int | str | None = "exact",
         write_id: str | None = None, precondition: Precondition | None = None) -> PutRequest:
    content_length = len(data) if length == "exact" else length
    assert content_length is None or isinstance(content_length, int)
    return PutRequest(path, _body(data), content_length=content_length, write_id=write_id,
                      precondition=precondition)


async def _read(service: ObjectService, path: str) -> bytes:
    obj, _ = await service.open_read(path)
    if obj.head.size_bytes == 0:
        return b""
    return b"".join([c async for c in service.read(obj, 0, obj.head.size_bytes - 1)])


def _leftovers(data_dir: Path) -> tuple[list[str], int]:
    """Files other than metadata databases, and pending rows, across every slot."""
    files = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("blobs/**/*")
                   if p.is_file())
    pending = 0
    for db_path in data_dir.glob("meta/group-*.sqlite3"):
        db = sqlite3.connect(db_path)
        pending += db.execute(
            "SELECT COUNT(*) FROM file_entries WHERE entry_kind = 'pending'").fetchone()[0]
        db.close()
    return files, pending


# -- puts ---------------------------------------------------------------------


@pytest.mark.parametrize("length", ["exact", None], ids=["with-length", "no-length"])
async def test_put_small_and_read_back(service: ObjectService, length: str | None) -> None:
    data = os.urandom(1000)
    out = await service.put(_put("a/small", data, length=length))
    assert not out.replay
    assert out.result == {"path": "a/small", "slot_id": service.resolve("a/small").slot_id,
                          "generation": 1, "etag": hashlib.sha256(data).hexdigest(),
                          "size_bytes": 1000, "committed_replicas": 1}
    obj, inline = await service.open_read("/a/small", inline_up_to=4096)
    assert inline == data and obj.head.generation == 1
    _, inline = await service.open_read("a/small", inline_up_to=10)
    assert inline is None


async def test_small_put_is_inline_and_reads_the_same(service: ObjectService,
                                                     tmp_path: Path) -> None:
    """A body with a length up to the store's inline limit creates no file;
    reads, ranges and the answer look exactly like a part file's."""
    data = os.urandom(4096)
    out = await service.put(_put("in/line", data))
    assert out.result["etag"] == hashlib.sha256(data).hexdigest()
    assert _leftovers(tmp_path / "d") == ([], 0)
    obj, inline = await service.open_read("in/line", inline_up_to=1 << 20)
    assert inline == data and obj.head.part_count == 1
    obj, inline = await service.open_read("in/line")  # HEAD-like: the bytes stay in SQLite
    assert inline is None
    await service.check_readable(obj)
    assert b"".join([c async for c in service.read(obj, 100, 199)]) == data[100:200]
    assert await _read(service, "in/line") == data
    await service.delete("in/line")
    with pytest.raises(Gone):
        await service.open_read("in/line")


@pytest.mark.parametrize("length", ["exact", None], ids=["with-length", "no-length"])
async def test_put_streamed_and_read_back(service: ObjectService, length: str | None,
                                          tmp_path: Path) -> None:
    data = os.urandom(BIG)
    out = await service.put(_put("big", data, length=length))
    assert out.result["etag"] == hashlib.sha256(data).hexdigest()
    assert out.result["size_bytes"] == BIG and out.result["generation"] == 1
    assert await _read(service, "big") == data
    obj, _ = await service.open_read("big")
    assert obj.head.part_count == -(-BIG // PART)
    await service.check_readable(obj)
    again = await service.put(_put("big", b"short now", length=length))
    assert again.result["generation"] == 2 and await _read(service, "big") == b"short now"
    assert _leftovers(tmp_path / "d")[1] == 0


@pytest.mark.parametrize("size", [10, BIG], ids=["small", "streamed"])
async def test_put_replay_with_write_id(service: ObjectService, size: int) -> None:
    first = await service.put(_put("r", b"1" * size, write_id="w-1"))
    again = await service.put(_put("r", b"2" * size, write_id="w-1"))
    assert again.replay and again.result == first.result
    assert await _read(service, "r") == b"1" * size
    other = await service.put(_put("r", b"3" * size, write_id="w-2"))
    assert not other.replay and other.result["generation"] == 2
    with pytest.raises(BadRequest):
        await service.put(_put("r", b"x", write_id="not valid!"))


@pytest.mark.parametrize("size", [10, BIG], ids=["small", "streamed"])
async def test_put_preconditions(service: ObjectService, size: int) -> None:
    create = Precondition(if_none_match_any=True)
    out = await service.put(_put("pre", b"a" * size, precondition=create))
    etag = out.result["etag"]
    with pytest.raises(PreconditionFailed):
        await service.put(_put("pre", b"b" * size, precondition=create))
    with pytest.raises(PreconditionFailed):
        await service.put(_put("pre", b"b" * size, precondition=Precondition(if_match=("x",))))
    with pytest.raises(PreconditionFailed):
        await service.put(_put("missing", b"b", precondition=Precondition(if_match=("*",))))
    assert await _read(service, "pre") == b"a" * size
    out = await service.put(_put("pre", b"c" * size,
                                 precondition=Precondition(if_match=("x", etag))))
    assert out.result["generation"] == 2 and await _read(service, "pre") == b"c" * size
    await service.delete("pre")
    # a deleted object counts as absent for If-None-Match: *
    out = await service.put(_put("pre", b"d", precondition=create))
    assert out.result["generation"] == 4


async def test_oversize_is_refused(service: ObjectService, tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        await service.put(_put("huge", b"", length=MAX_OBJECT + 1))
    with pytest.raises(PayloadTooLarge):
        await service.put(_put("huge", b"x" * (MAX_OBJECT + 1), length=None))
    with pytest.raises(NotFound):
        await service.open_read("huge")
    assert _leftovers(tmp_path / "d") == ([], 0)


@pytest.mark.parametrize("declared", [10, BIG], ids=["small", "streamed"])
async def test_body_and_content_length_must_agree(service: ObjectService, declared: int,
                                                  tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="shorter"):
        await service.put(_put("cl", b"x" * (declared - 1), length=declared))
    with pytest.raises(BadRequest, match="longer"):
        await service.put(_put("cl", b"x" * (declared + 1), length=declared))
    with pytest.raises(NotFound):
        await service.open_read("cl")
    assert _leftovers(tmp_path / "d") == ([], 0)


@pytest.mark.parametrize("length", [BIG, None], ids=["with-length", "no-length"])
async def test_failing_body_aborts_cleanly(service: ObjectService, tmp_path: Path,
                                           length: int | None) -> None:
    await service.put(_put("keep", b"kept"))
    kept = _leftovers(tmp_path / "d")[0]

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(PART)
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        await service.put(PutRequest("torn", failing(), content_length=length))
    assert _leftovers(tmp_path / "d") == (kept, 0)
    with pytest.raises(NotFound):
        await service.open_read("torn")
    assert await _read(service, "keep") == b"kept"


# -- deletes -------------------------------------------------------------------


async def test_delete_missing_and_deleted(service: ObjectService) -> None:
    with pytest.raises(NotFound):
        await service.delete("never")
    await service.put(_put("d", b"v"))
    out = await service.delete("d")
    slot = service.resolve("d").slot_id
    expected = {"path": "d", "slot_id": slot, "generation": 2, "deleted": True,
                "committed_replicas": 1}
    assert out.result == expected and not out.replay
    again = await service.delete("/d")
    assert again.result == expected and not again.replay  # no new tombstone
    with pytest.raises(Gone):
        await service.open_read("d")
    with pytest.raises(NotFound):
        await service.open_read("never")


async def test_delete_replay_with_write_id(service: ObjectService) -> None:
    await service.put(_put("dr", b"v"))
    first = await service.delete("dr", write_id="del-1")
    assert first.result["generation"] == 2
    # recreated afterwards: a retry of the old delete must not delete it again
    await service.put(_put("dr", b"back"))
    again = await service.delete("dr", write_id="del-1")
    assert again.replay and again.result == first.result
    assert await _read(service, "dr") == b"back"
    with pytest.raises(BadRequest):
        await service.delete("dr", write_id="")


# -- listing -------------------------------------------------------------------


async def test_list_pages_with_cursor(service: ObjectService) -> None:
    names = [f"logs/{i:02d}" for i in range(7)] + ["other"]
    for name in names:
        await service.put(_put(name, name.encode()))
    await service.delete("logs/03")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await service.list("logs/", 2, cursor, include_deleted=False)
        seen += [item["path"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [n for n in names if n.startswith("logs/") and n != "logs/03"]
    assert pages == 3
    everything = await service.list("/logs/", 100, None, include_deleted=True)
    items = {item["path"]: item for item in everything["items"]}
    assert items["logs/03"]["deleted"] and items["logs/03"]["generation"] == 2
    assert items["logs/00"]["etag"] == hashlib.sha256(b"logs/00").hexdigest()
    assert everything["next_cursor"] is None
    for bad in ({"limit": 0}, {"limit": 10_001}, {"cursor": "!!!"}, {"prefix": "a\x01"}):
        with pytest.raises(BadRequest):
            await service.list(str(bad.get("prefix", "")), int(bad.get("limit", 10)),
                               str(bad["cursor"]) if "cursor" in bad else None, False)
