import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from rimio.core.head import Head
from rimio.core.writes import CommitOutcome, Precondition
from rimio.storage.store import LocalStore

PART = 4096


async def _open(tmp_path: Path, disks: int = 1) -> LocalStore:
    store = LocalStore([tmp_path / f"disk{i}" for i in range(disks)], total_slots=16,
                       part_size=PART, io_threads=4)
    await store.open()
    return store


async def _put(store: LocalStore, slot: int, path: str, data: bytes,
               write_id: str = "") -> tuple[CommitOutcome, Head]:
    session = await store.begin_write(slot, path, 1.0)
    for i in range(0, len(data), 1000):
        await session.write(data[i:i + 1000])
    parts, etag, size = await session.finish()
    head = Head(kind="meta", path=path, slot_id=slot, generation=session.generation,
                write_id=write_id, size_bytes=size, etag=etag, part_size=PART,
                part_count=len(parts), timestamp=2.0)
    outcome, _ = await store.commit(slot, head, parts, now=2.0, pending_id=session.pending_id,
                                    result={"generation": head.generation} if write_id else None)
    if outcome is not CommitOutcome.APPLIED:
        await session.abort()
    return outcome, head


async def _read_all(store: LocalStore, slot: int, path: str, start: int = 0,
                    end: int | None = None) -> bytes:
    obj = await store.get_object(slot, path)
    assert obj is not None
    stop = obj.head.size_bytes - 1 if end is None else end
    out = bytearray()
    chunks: AsyncIterator[bytes] = store.read_object(obj, start, stop)
    async for chunk in chunks:
        out += chunk
    return bytes(out)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_write_commit_read_across_parts(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(PART * 3 + 123)
    outcome, head = await _put(store, 3, "a/b.bin", data)
    assert outcome is CommitOutcome.APPLIED
    assert head.generation == 1 and head.part_count == 4
    assert head.etag == hashlib.sha256(data).hexdigest()
    assert await _read_all(store, 3, "a/b.bin") == data
    assert await _read_all(store, 3, "a/b.bin", PART - 5, 2 * PART + 5) == data[PART - 5:2 * PART + 6]
    parts = sorted((tmp_path / "disk0/slots/3/blobs/a/b.bin/g.1").iterdir())
    assert [p.name.split(".")[1] for p in parts] == ["00000000", "00000001", "00000002", "00000003"]
    assert parts[0].name == f"part.00000000.{hashlib.sha256(data[:PART]).hexdigest()}"
    await store.close()


async def test_generations_rise_and_overwrite_wins(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, 1, "k", b"one")
    _, second = await _put(store, 1, "k", b"two")
    assert second.generation == 2
    assert await _read_all(store, 1, "k") == b"two"
    await store.close()


async def test_interrupted_write_is_cleaned_at_open(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, 2, "keep", b"x" * 10)
    before = _files(tmp_path / "disk0/slots/2/blobs")
    session = await store.begin_write(2, "torn", 1.0)
    await session.write(os.urandom(PART + 10))  # one sealed part and one temp file
    assert len(_files(tmp_path / "disk0/slots/2/blobs")) == len(before) + 2
    await store.close()  # "crash": neither commit nor abort

    store = await _open(tmp_path)
    assert store.recovered_writes == 1
    assert _files(tmp_path / "disk0/slots/2/blobs") == before
    assert not (tmp_path / "disk0/slots/2/blobs/torn").exists()
    assert await store.get_object(2, "torn") is None
    assert await _read_all(store, 2, "keep") == b"x" * 10
    db = sqlite3.connect(tmp_path / "disk0/slots/2/meta.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM file_entries WHERE entry_kind='pending'").fetchone()[0] == 0
    await store.close()


async def test_abort_removes_everything(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    session = await store.begin_write(5, "gone/soon", 1.0)
    await session.write(os.urandom(PART * 2 + 1))
    await session.abort()
    assert _files(tmp_path / "disk0/slots/5") == ["meta.sqlite3", "meta.sqlite3-shm",
                                                    "meta.sqlite3-wal"]
    await store.close()


async def test_write_id_replay_and_preconditions(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    outcome, _ = await _put(store, 1, "p", b"v1", write_id="w1")
    assert outcome is CommitOutcome.APPLIED
    assert await store.write_result(1, "p", "w1") == {"generation": 1}
    outcome, _ = await _put(store, 1, "p", b"v1", write_id="w1")
    assert outcome is CommitOutcome.REPLAY
    assert await _read_all(store, 1, "p") == b"v1"

    session = await store.begin_write(1, "p", 1.0)
    await session.write(b"v2")
    parts, etag, size = await session.finish()
    h2 = Head(kind="meta", path="p", slot_id=1, generation=session.generation, write_id="",
              size_bytes=size, etag=etag, part_size=PART, part_count=1)
    outcome, _ = await store.commit(1, h2, parts, now=3.0, pending_id=session.pending_id,
                                    precondition=Precondition(if_match=("nope",)))
    assert outcome is CommitOutcome.PRECONDITION_FAILED
    await session.abort()
    outcome, _ = await store.commit(1, h2, parts, now=3.0,
                                    precondition=Precondition(if_none_match_any=True))
    assert outcome is CommitOutcome.PRECONDITION_FAILED
    assert await _read_all(store, 1, "p") == b"v1"
    await store.close()


async def test_lower_generation_is_superseded(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    first = await store.begin_write(1, "race", 1.0)
    second = await store.begin_write(1, "race", 1.0)
    assert (first.generation, second.generation) == (1, 2)
    for s, body in ((second, b"new"), (first, b"old")):
        await s.write(body)
        parts, etag, size = await s.finish()
        h = Head(kind="meta", path="race", slot_id=1, generation=s.generation, write_id="",
                 size_bytes=size, etag=etag, part_size=PART, part_count=1)
        outcome, _ = await store.commit(1, h, parts, now=1.0, pending_id=s.pending_id)
        if outcome is not CommitOutcome.APPLIED:
            await s.abort()
    assert outcome is CommitOutcome.SUPERSEDED
    assert await _read_all(store, 1, "race") == b"new"
    assert not (tmp_path / "disk0/slots/1/blobs/race/g.1").exists()
    await store.close()


async def test_list_across_slots_and_disks_with_cursor(tmp_path: Path) -> None:
    store = await _open(tmp_path, disks=2)
    names = [f"dir/{i:03d}" for i in range(30)] + ["dis", "other/x"]
    for i, name in enumerate(names):
        await _put(store, i % 16, name, b"z")
    tomb = Head(kind="tombstone", path="dir/005", slot_id=5, generation=9, write_id="")
    await store.commit(5, tomb, [], now=1.0)
    got: list[str] = []
    after = None
    while True:
        page = await store.list_heads("dir/", after, 7, include_deleted=False)
        got += [h.path for h in page]
        if len(page) < 7:
            break
        after = page[-1].path
    assert got == [n for n in sorted(names) if n.startswith("dir/") and n != "dir/005"]
    with_deleted = await store.list_heads("dir/00", None, 100, include_deleted=True)
    assert [h.path for h in with_deleted][:6] == [f"dir/00{i}" for i in range(6)]
    assert with_deleted[5].deleted
    assert {p.name for p in (tmp_path / "disk1/slots").iterdir()} == {str(s) for s in range(1, 16, 2)}
    await store.close()


async def test_gc_removes_superseded_generations_after_grace(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, 4, "g", os.urandom(PART + 1))
    await _put(store, 4, "g", b"small")
    assert (tmp_path / "disk0/slots/4/blobs/g/g.1").exists()
    assert await store.collect_garbage(cutoff=0.0) == 0  # superseded at t=2.0: not yet old
    assert await store.collect_garbage(cutoff=10.0) == 1
    assert not (tmp_path / "disk0/slots/4/blobs/g/g.1").exists()
    assert await _read_all(store, 4, "g") == b"small"
    await store.close()


async def test_concurrent_writes_to_one_path_get_distinct_generations(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    gens: list[int] = []

    async def one(i: int) -> None:
        _, head = await _put(store, 7, "hot", str(i).encode() * 100)
        gens.append(head.generation)

    async with trio.open_nursery() as n:
        for i in range(10):
            n.start_soon(one, i)
    assert sorted(gens) == list(range(1, 11))
    obj = await store.get_object(7, "hot")
    assert obj is not None and obj.head.generation == 10
    await store.close()


async def test_unusable_disk_is_refused(tmp_path: Path) -> None:
    from rimio.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    store = LocalStore([blocker], total_slots=4, part_size=PART)
    with pytest.raises(ConfigError, match="not a directory"):
        await store.open()


async def test_slot_cache_bounds_open_databases(tmp_path: Path) -> None:
    store = LocalStore([tmp_path / "d"], total_slots=16, part_size=PART, max_open_slots=2)
    await store.open()
    # a write in flight on slot 0 while other slots push it out of the cache
    session = await store.begin_write(0, "inflight", 1.0)
    await session.write(b"a" * 10)
    for slot in range(1, 8):
        await _put(store, slot, f"p{slot}", str(slot).encode())
    assert store._cache.open_count <= 2
    parts, etag, size = await session.finish()
    head = Head(kind="meta", path="inflight", slot_id=0, generation=session.generation,
                write_id="", size_bytes=size, etag=etag, part_size=PART, part_count=1)
    outcome, _ = await store.commit(0, head, parts, now=1.0, pending_id=session.pending_id)
    # reopening slot 0 did not "recover" (delete) the write that was still running
    assert outcome is CommitOutcome.APPLIED and store.recovered_writes == 0
    assert await _read_all(store, 0, "inflight") == b"a" * 10
    for slot in range(1, 8):
        assert await _read_all(store, slot, f"p{slot}") == str(slot).encode()
    await store.close()


async def test_small_write_and_read_in_one_call(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    outcome, result = await store.write_small(
        3, "s", b"x" * (PART + 5), write_id="w", now=1.0, precondition=None,
        result_for=lambda h: {"generation": h.generation, "etag": h.etag})
    assert outcome is CommitOutcome.APPLIED and result is not None
    assert result["etag"] == hashlib.sha256(b"x" * (PART + 5)).hexdigest()
    again, first = await store.write_small(
        3, "s", b"other", write_id="w", now=2.0, precondition=None,
        result_for=lambda h: {"generation": h.generation})
    assert again is CommitOutcome.REPLAY and first == result
    refused, _ = await store.write_small(
        3, "s", b"new", write_id="", now=2.0,
        precondition=Precondition(if_none_match_any=True), result_for=lambda h: {})
    assert refused is CommitOutcome.PRECONDITION_FAILED
    obj, data = await store.read_small(3, "s", 1 << 20)
    assert obj is not None and data == b"x" * (PART + 5)
    obj, data = await store.read_small(3, "s", 10)
    assert obj is not None and data is None
    assert _files(tmp_path / "disk0/slots/3/blobs") == sorted(
        f"s/g.1/{p.name}" for p in (tmp_path / "disk0/slots/3/blobs/s/g.1").iterdir())
    await store.close()


async def test_background_evictor_trims_the_cache(tmp_path: Path) -> None:
    store = LocalStore([tmp_path / "d"], total_slots=16, part_size=PART, max_open_slots=3)
    await store.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_evictor)
        for slot in range(10):
            await _put(store, slot, f"k{slot}", b"v")
        assert store._cache.open_count > 3  # requests did not wait for closing
        with trio.fail_after(5):
            while store._cache.open_count > 3:  # noqa: ASYNC110 - polling the cache
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert store._cache.evict_inline  # back to inline eviction without the task
    for slot in range(10):
        assert await _read_all(store, slot, f"k{slot}") == b"v"
    await store.close()
