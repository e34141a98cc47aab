"""A replica's side of the replica protocol over a real LocalStore (RFC 0011 §5):
part uploads one request at a time, heads applied by the head order,
idempotent retries, aborts, crash recovery, slot drops."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rimio.core.errors import BadRequest, PayloadTooLarge
from rimio.core.head import Head, winner
from rimio.core.replica import PartInfo, PartMissing
from rimio.core.slots import slot_for_path
from rimio.storage.meta import group_file
from rimio.storage.replica import LocalReplica
from rimio.storage.store import LocalStore

PART = 4096
SLOTS = 16
PATH = "dir/object"
SLOT = slot_for_path(PATH, SLOTS)


async def _open(root: Path, **kwargs: object) -> LocalStore:
    store = LocalStore([root / "disk0"], total_slots=SLOTS, part_size=PART, io_threads=4,
                       **kwargs)  # type: ignore[arg-type]
    await store.open()
    return store


def _replica(store: LocalStore) -> LocalReplica:
    return LocalReplica(store, "n1", clock=lambda: 5.0)


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _head(data: bytes, generation: int, *, path: str = PATH, write_id: str = "w",
          timestamp: float = 1.0) -> Head:
    return Head(kind="meta", path=path, slot_id=slot_for_path(path, SLOTS),
                generation=generation, write_id=write_id, size_bytes=len(data),
                etag=hashlib.sha256(data).hexdigest(), part_size=PART,
                part_count=-(-len(data) // PART), timestamp=timestamp)


def _tombstone(generation: int, *, path: str = PATH, write_id: str = "d") -> Head:
    return Head(kind="tombstone", path=path, slot_id=slot_for_path(path, SLOTS),
                generation=generation, write_id=write_id, timestamp=2.0)


def _pieces(data: bytes) -> list[bytes]:
    return [data[i:i + PART] for i in range(0, len(data), PART)]


async def _upload(replica: LocalReplica, head: Head, data: bytes,
                  order: list[int] | None = None) -> list[PartInfo]:
    pieces = _pieces(data)
    infos: dict[int, PartInfo] = {}
    for i in order if order is not None else range(len(pieces)):
        infos[i] = await replica.put_part(head.slot_id, head.path, head.generation, i,
                                          _chunks(pieces[i]))
    return [infos[i] for i in sorted(infos)]


async def _write(replica: LocalReplica, head: Head, data: bytes) -> bool:
    parts = await _upload(replica, head, data)
    answer = await replica.apply_head(head, parts, None, None, 1)
    return answer.applied


async def _read(replica: LocalReplica, head: Head) -> bytes:
    out = bytearray()
    for i, piece in enumerate(_pieces(b"x" * head.size_bytes)):
        async for chunk in replica.read_part(head, i, 0, len(piece)):
            out += chunk
    return bytes(out)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and "meta" not in p.parts)


def _rows(root: Path, kind: str, slot: int = SLOT) -> int:
    db = sqlite3.connect(f"file:{group_file(root / 'disk0', slot)}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM file_entries WHERE entry_kind = ? "
                              "AND slot_id = ?", (kind, slot)).fetchone()[0])
    finally:
        db.close()


async def test_parts_out_of_order_then_head_makes_the_object(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(3 * PART + 17)
    head = _head(data, 4)
    parts = await _upload(replica, head, data, order=[2, 0, 3, 1])
    assert [p.index for p in parts] == [0, 1, 2, 3]
    assert [p.sha256 for p in parts] == [hashlib.sha256(x).hexdigest() for x in _pieces(data)]
    # uploaded, not visible; one marker for the four parts
    assert (await replica.get_head(SLOT, PATH)).head is None
    assert _rows(tmp_path, "pending") == 1
    answer = await replica.apply_head(head, parts, None, {"generation": 4}, 1)
    assert answer.applied and answer.current == head
    assert _rows(tmp_path, "pending") == 0
    assert await _read(replica, head) == data
    # the object reads through the ordinary read path too
    obj = await store.get_object(SLOT, PATH)
    assert obj is not None and obj.head == head
    got = b"".join([c async for c in store.read_object(obj, 0, len(data) - 1)])
    assert got == data
    # a range inside one part
    assert b"".join([c async for c in replica.read_part(head, 1, 10, 20)]) == data[PART + 10:
                                                                                   PART + 20]
    await store.close()


async def test_retries_of_parts_and_heads_are_harmless(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(2 * PART)
    head = _head(data, 1)
    first = await _upload(replica, head, data)
    again = await _upload(replica, head, data, order=[1, 1, 0])
    assert first == again
    assert (await replica.apply_head(head, first, None, {"n": 1}, 1)).applied
    files = _files(tmp_path)
    # the same head again, after the same parts again: applied, nothing changes
    await _upload(replica, head, data)
    answer = await replica.apply_head(head, first, None, {"n": 2}, 1)
    assert answer.applied and answer.current == head
    assert _files(tmp_path) == files
    assert _rows(tmp_path, "pending") == 0 and _rows(tmp_path, "meta") == 1
    # the first write result stays
    assert (await replica.get_head(SLOT, PATH, "w")).write_result == {"n": 1}
    await store.close()


async def test_head_order_decides_on_apply(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    a, b = os.urandom(PART + 1), os.urandom(100)
    high = _head(a, 5)
    assert await _write(replica, high, a)
    # a lower generation loses: not applied, its files are gone again
    before = _files(tmp_path)
    low = _head(b, 4)
    parts = await _upload(replica, low, b)
    answer = await replica.apply_head(low, parts, None, None, 1)
    assert not answer.applied and answer.current == high
    assert _files(tmp_path) == before and _rows(tmp_path, "pending") == 0
    # at equal generation, the larger head SHA-256 wins
    twins = sorted([_head(b, 6, timestamp=t) for t in (1.0, 2.0)], key=lambda h: h.sha256)
    assert await _write(replica, twins[1], b)
    assert not await _write(replica, twins[0], b)
    assert (await replica.get_head(SLOT, PATH)).head == twins[1]
    # a tombstone beats a meta at equal generation, and a meta does not beat it back
    tomb = _tombstone(6)
    assert (await replica.apply_head(tomb, [], None, None, 1)).applied
    answer = await replica.apply_head(_head(b, 6, timestamp=9.0), [], b, None, 1)
    assert not answer.applied and answer.current == tomb
    # a higher generation beats the tombstone
    newer = _head(b, 7)
    assert (await replica.apply_head(newer, [], b, None, 1)).applied
    assert await _read(replica, newer) == b
    await store.close()


async def test_a_missing_part_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(2 * PART + 5)
    head = _head(data, 1)
    parts = await _upload(replica, head, data, order=[0, 2])
    offered = [*parts[:1], PartInfo(1, hashlib.sha256(_pieces(data)[1]).hexdigest(), PART),
               parts[1]]
    with pytest.raises(PartMissing):
        await replica.apply_head(head, offered, None, None, 1)
    assert (await replica.get_head(SLOT, PATH)).head is None
    # a part file gone from the disk is missing too
    await replica.put_part(SLOT, PATH, 1, 1, _chunks(_pieces(data)[1]))
    victim = next(p for p in (tmp_path / "disk0").rglob("part.00000001.*"))
    os.unlink(victim)
    with pytest.raises(PartMissing):
        await replica.apply_head(head, offered, None, None, 1)
    # uploaded again: the same offer now applies
    await replica.put_part(SLOT, PATH, 1, 1, _chunks(_pieces(data)[1]))
    assert (await replica.apply_head(head, offered, None, None, 1)).applied
    assert await _read(replica, head) == data
    with pytest.raises(PartMissing):
        [c async for c in replica.read_part(_head(data, 2), 0, 0, 1)]
    await store.close()


async def test_abort_removes_uploads_and_marker(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(3 * PART)
    head = _head(data, 3)
    await _upload(replica, head, data)
    assert _files(tmp_path)
    await replica.abort(SLOT, PATH, 3)
    assert _files(tmp_path) == [] and _rows(tmp_path, "pending") == 0
    assert _rows(tmp_path, "part") == 0
    await replica.abort(SLOT, PATH, 3)  # again: nothing to do
    await store.close()


async def test_abort_keeps_files_a_head_names(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(PART + 3)
    head = _head(data, 2)
    assert await _write(replica, head, data)
    await _upload(replica, head, data)  # a late retry of the same parts
    await replica.abort(SLOT, PATH, 2)
    assert await _read(replica, head) == data
    await store.close()


async def test_pending_replica_write_is_recovered_after_a_crash(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(2 * PART)
    await _upload(replica, _head(data, 1), data)
    # the "crash": neither head nor abort; the database stays as it is on disk
    await store.close()
    assert _files(tmp_path) and _rows(tmp_path, "pending") == 1
    store = await _open(tmp_path)
    assert store.recovered_writes == 1
    assert _files(tmp_path) == []
    assert _rows(tmp_path, "pending") == 0 and _rows(tmp_path, "part") == 0
    # and the head that would have named them is refused now
    with pytest.raises(PartMissing):
        await _replica(store).apply_head(_head(data, 1), [
            PartInfo(i, hashlib.sha256(p).hexdigest(), len(p))
            for i, p in enumerate(_pieces(data))], None, None, 1)
    await store.close()


async def test_upload_that_fails_midway_leaves_no_file(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise ConnectionError("the coordinator went away")

    with pytest.raises(ConnectionError):
        await replica.put_part(SLOT, PATH, 1, 0, broken())
    with pytest.raises(PayloadTooLarge):
        await replica.put_part(SLOT, PATH, 1, 0, _chunks(b"y" * (PART + 1)))
    with pytest.raises(BadRequest):
        await replica.put_part(SLOT, PATH, 1, 0, _chunks(b""))
    assert _files(tmp_path) == []
    await replica.abort(SLOT, PATH, 1)
    assert _rows(tmp_path, "pending") == 0
    await store.close()


async def test_write_result_is_recorded_once_even_when_not_applied(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = b"small"
    high = _head(data, 3, write_id="a")
    assert (await replica.apply_head(high, [], data, {"first": "a"}, 1)).applied
    low = _head(data, 2, write_id="b")
    assert not (await replica.apply_head(low, [], data, {"first": "b"}, 1)).applied
    assert (await replica.apply_head(high, [], data, {"second": "a"}, 1)).applied
    assert (await replica.get_head(SLOT, PATH, "a")).write_result == {"first": "a"}
    assert (await replica.get_head(SLOT, PATH, "b")).write_result == {"first": "b"}
    answer = await replica.get_head(SLOT, PATH, "zzz")
    assert answer.head == high and answer.write_result is None
    await store.close()


async def test_inline_objects_and_empty_objects(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(PART + 100)  # inline may span parts: rows hold them
    head = _head(data, 1)
    assert (await replica.apply_head(head, [], data, None, 1)).applied
    assert _files(tmp_path) == []
    assert await _read(replica, head) == data
    empty = _head(b"", 2)
    assert (await replica.apply_head(empty, [], b"", None, 1)).applied
    obj = await store.get_object(SLOT, PATH)
    assert obj is not None and obj.head == empty and obj.parts == ()
    # inline bytes that are not the head's are refused before anything is stored
    with pytest.raises(BadRequest):
        await replica.apply_head(_head(b"abc", 3), [], b"abd", None, 1)
    await store.close()


async def test_compressed_parts_read_back(tmp_path: Path) -> None:
    store = await _open(tmp_path, compression="zstd", inline_max_bytes=0)
    replica = _replica(store)
    data = b"compress me " * 1000  # ~12 KB: three parts, two whole
    head = _head(data, 1)
    assert await _write(replica, head, data)
    stored = sum(p.stat().st_size for p in (tmp_path / "disk0" / "slots").rglob("part.*"))
    assert stored < len(data) // 4
    assert await _read(replica, head) == data
    chunk = b"".join([c async for c in replica.read_part(head, 1, 100, 3000)])
    assert chunk == data[PART + 100:PART + 3000]
    await store.close()


async def test_list_heads_of_one_slot_and_of_all(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    paths = [f"p/{i}" for i in range(40)]
    for i, path in enumerate(paths):
        head = (_tombstone(1, path=path) if i % 5 == 0 else _head(b"v", 1, path=path))
        await replica.apply_head(head, [], None if head.deleted else b"v", None, 1)
    everything = await replica.list_heads(None, "p/", None, 100)
    assert [h.path for h in everything] == sorted(paths)
    assert sum(h.deleted for h in everything) == 8
    slot = slot_for_path(paths[0], SLOTS)
    mine = sorted(p for p in paths if slot_for_path(p, SLOTS) == slot)
    listed = await replica.list_heads(slot, "", None, 100)
    assert [h.path for h in listed] == mine
    assert [h.path for h in await replica.list_heads(slot, "", mine[0], 1)] == mine[1:2]
    await store.close()


async def test_drop_slot_removes_rows_and_files(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(2 * PART)
    head = _head(data, 1)
    assert await _write(replica, head, data)
    other = "elsewhere/x"
    while slot_for_path(other, SLOTS) == SLOT:
        other += "x"
    kept = _head(data, 1, path=other)
    assert await _write(replica, kept, data)
    await _upload(replica, _head(data, 2), data)  # a pending write too
    await replica.drop_slot(SLOT)
    assert (await replica.get_head(SLOT, PATH, "w")) .head is None
    assert (await replica.get_head(SLOT, PATH, "w")).write_result is None
    assert not list((store.slot_dir(SLOT)).rglob("part.*"))
    assert _rows(tmp_path, "pending") == 0
    assert await _read(replica, kept) == data
    # the slot can be filled again
    assert await _write(replica, head, data)
    assert await _read(replica, head) == data
    await store.close()


async def test_interrupted_drop_is_finished_at_start(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    replica = _replica(store)
    data = os.urandom(2 * PART)
    assert await _write(replica, _head(data, 1), data)
    # the "crash": the rows went (first step), the files did not (second step)
    await store._with_slot(SLOT, lambda meta: meta.forget_slot())
    await store.close()
    assert list(store.slot_dir(SLOT).rglob("part.*"))
    store = await _open(tmp_path)
    assert store.finished_drops == 1
    assert not list(store.slot_dir(SLOT).rglob("part.*"))
    assert (await _replica(store).get_head(SLOT, PATH)).head is None
    await store.close()


async def test_apply_waits_for_nothing_while_uploads_of_its_generation_run(
        tmp_path: Path) -> None:
    """Two coordinators that chose the same generation: the head of one
    applies while the other still uploads; the other's marker stays."""
    store = await _open(tmp_path)
    replica = _replica(store)
    a, b = os.urandom(PART), os.urandom(PART)
    head_a = _head(a, 1, timestamp=1.0)
    parts_a = await _upload(replica, head_a, a)
    gate = trio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b[:100]
        await gate.wait()
        yield b[100:]

    async with trio.open_nursery() as nursery:
        results: list[PartInfo] = []

        async def upload_b() -> None:
            results.append(await replica.put_part(SLOT, PATH, 1, 0, slow()))

        nursery.start_soon(upload_b)
        await trio.sleep(0.05)
        assert (await replica.apply_head(head_a, parts_a, None, None, 1)).applied
        assert _rows(tmp_path, "pending") == 1  # b's upload is still in flight
        gate.set()
    assert results[0].sha256 == hashlib.sha256(b).hexdigest()
    await replica.abort(SLOT, PATH, 1)
    assert _rows(tmp_path, "pending") == 0
    assert await _read(replica, head_a) == a
    await store.close()


HEADS = st.builds(
    lambda gen, tomb, ts: _tombstone(gen, write_id=f"t{ts}") if tomb
    else _head(b"z" * (ts % 3 * 3000), gen, timestamp=float(ts)),
    st.integers(1, 4), st.booleans(), st.integers(0, 5))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(heads=st.lists(HEADS, min_size=1, max_size=8), data=st.data())
def test_any_order_of_applies_ends_on_the_head_order_maximum(
        tmp_path_factory: pytest.TempPathFactory, heads: list[Head],
        data: st.DataObject) -> None:
    order = data.draw(st.permutations(heads))
    # Objects with bytes come inline or as uploaded parts (heads of one
    # generation with the same bytes share their part files).
    via_parts = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    root = tmp_path_factory.mktemp("order")

    async def run() -> Head | None:
        store = await _open(root)
        replica = _replica(store)
        try:
            for head, uploaded in zip(order, via_parts, strict=True):
                body = b"z" * head.size_bytes
                if head.deleted:
                    await replica.apply_head(head, [], None, None, 1)
                elif uploaded and body:
                    await _write(replica, head, body)
                else:
                    await replica.apply_head(head, [], body, None, 1)
            current = (await replica.get_head(SLOT, PATH)).head
            if current is not None and not current.deleted:
                assert await _read(replica, current) == b"z" * current.size_bytes
            return current
        finally:
            await store.close()

    assert trio.run(run) == winner(heads)
    assert not [p for p in root.rglob(".tmp-*")]
    # every write settled: no marker and no upload row is left behind
    assert _rows(root, "pending") == 0
    db = sqlite3.connect(f"file:{group_file(root / 'disk0', SLOT)}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT COUNT(*) FROM file_entries WHERE entry_kind = 'part' "
                          "AND head_sha256 IS NULL").fetchone()[0] == 0
    finally:
        db.close()
