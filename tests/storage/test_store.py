import errno
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from rimio.core.errors import DiskError, InsufficientStorage
from rimio.core.head import Head
from rimio.core.writes import CommitOutcome, Precondition, WriteReport
from rimio.storage.meta import group_file
from rimio.storage.parts import ObjectWriter, Piece
from rimio.storage.store import LocalStore
from rimio.storage.writes import TOMBSTONE, LocalWrite

PART = 4096


async def _open(tmp_path: Path, disks: int = 1) -> LocalStore:
    store = LocalStore([tmp_path / f"disk{i}" for i in range(disks)], total_slots=16,
                       part_size=PART, io_threads=4)
    await store.open()
    return store


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _recording(heads: list[Head]) -> Callable[[Head], dict[str, Any]]:
    def result_for(head: Head) -> dict[str, Any]:
        heads.append(head)
        return {"generation": head.generation}

    return result_for


async def _put(store: LocalStore, slot: int, path: str, data: bytes,
               write_id: str = "") -> tuple[CommitOutcome, Head | None]:
    """A streamed write of `data` in chunks of 1000 bytes; the head it tried to commit."""
    heads: list[Head] = []
    report = await store.write(slot, path, _chunks(data), write_id=write_id, clock=lambda: 2.0,
                               precondition=None, result_for=_recording(heads))
    return report.outcome, heads[-1] if heads else None


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


def _pending_rows(tmp_path: Path, slot: int) -> int:
    db = sqlite3.connect(f"file:{group_file(tmp_path / 'disk0', slot)}?mode=ro", uri=True)
    try:
        return int(db.execute(
            "SELECT COUNT(*) FROM file_entries WHERE entry_kind='pending' AND slot_id = ?",
            (slot,)).fetchone()[0])
    finally:
        db.close()


class Gate:
    """A streamed body that sends its first chunk, then waits to be opened."""

    def __init__(self, first: bytes, rest: bytes = b"") -> None:
        self.first, self.rest = first, rest
        self.sent = trio.Event()
        self.open = trio.Event()

    async def body(self) -> AsyncIterator[bytes]:
        yield self.first
        self.sent.set()
        await self.open.wait()
        if self.rest:
            yield self.rest


async def test_write_commit_read_across_parts(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(PART * 3 + 123)
    outcome, head = await _put(store, 3, "a/b.bin", data)
    assert outcome is CommitOutcome.APPLIED and head is not None
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
    assert second is not None and second.generation == 2
    assert await _read_all(store, 1, "k") == b"two"
    await store.close()


async def test_interrupted_write_is_cleaned_at_open(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, 2, "keep", b"x" * 10)
    before = _files(tmp_path / "disk0/slots/2/blobs")
    # The first steps of a streamed write, then a "crash": neither commit nor abort.
    torn = LocalWrite(2, "torn", store.slot_dir(2), PART, tombstone=False, write_id="",
                      precondition=None, result_for=lambda h: {})
    with store._cache.acquire(2) as meta:
        assert torn.admit(meta, 1.0) is None
    torn.write(os.urandom(PART + 10))  # one sealed part and one temp file
    assert len(_files(tmp_path / "disk0/slots/2/blobs")) == len(before) + 2
    await store.close()

    store = await _open(tmp_path)
    assert store.recovered_writes == 1
    assert _files(tmp_path / "disk0/slots/2/blobs") == before
    assert not (tmp_path / "disk0/slots/2/blobs/torn").exists()
    assert await store.get_object(2, "torn") is None
    assert await _read_all(store, 2, "keep") == b"x" * 10
    assert _pending_rows(tmp_path, 2) == 0
    torn.remove_files()  # closes the file the "crashed" writer still held
    await store.close()


async def test_failing_body_leaves_nothing_behind(tmp_path: Path) -> None:
    store = await _open(tmp_path)

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(PART * 2 + 1)
        raise ValueError("the client went away")

    # The body's own error comes out as it is, not inside an exception group.
    with pytest.raises(ValueError, match="went away"):
        await store.write(5, "gone/soon", failing(), write_id="", clock=lambda: 1.0,
                          precondition=None, result_for=lambda h: {})
    # the slot's directory was made by this write, so it went with it
    assert not (tmp_path / "disk0/slots/5").exists()
    assert _pending_rows(tmp_path, 5) == 0
    assert await store.current_head(5, "gone/soon") is None
    await store.close()


async def test_cancelled_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    gate = Gate(os.urandom(PART + 7))

    async def write() -> None:
        await store.write(6, "c", gate.body(), write_id="", clock=lambda: 1.0,
                          precondition=None, result_for=lambda h: {})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await gate.sent.wait()
        await trio.sleep(0.05)  # let the first batch reach the disk
        assert _files(tmp_path / "disk0/slots/6/blobs") != []
        nursery.cancel_scope.cancel()
    assert _files(tmp_path / "disk0/slots/6/blobs") == []
    assert not (tmp_path / "disk0/slots/6/blobs/c/g.1").exists()
    assert _pending_rows(tmp_path, 6) == 0
    await store.close()


@pytest.mark.parametrize("kind", ["bytes", "stream", "tombstone"])
async def test_each_content_kind_through_every_outcome(tmp_path: Path, kind: str) -> None:
    store = await _open(tmp_path)
    await _put(store, 1, "p", b"v0")  # generation 1: a live object to overwrite or delete

    async def write(write_id: str = "", precondition: Precondition | None = None,
                    generation: int | None = None) -> WriteReport:
        content: Any = {"bytes": b"v" * (PART + 1), "stream": _chunks(b"v" * (PART + 1)),
                        "tombstone": TOMBSTONE}[kind]
        return await store.write(1, "p", content, write_id=write_id, clock=lambda: 3.0,
                                 precondition=precondition, result_for=_recording([]))

    applied = await write("w1", Precondition(if_match=("*",)))
    assert applied.outcome is CommitOutcome.APPLIED and applied.result == {"generation": 2}
    current = await store.current_head(1, "p")
    assert current is not None and current.generation == 2
    assert current.deleted == (kind == "tombstone")

    replay = await write("w1")
    assert replay.outcome is CommitOutcome.REPLAY and replay.result == {"generation": 2}

    refused = await write("", Precondition(if_match=("nope",)))
    assert refused.outcome is CommitOutcome.PRECONDITION_FAILED
    assert refused.result is None and refused.current == current

    # A generation given from outside (a replica's seam) that loses to the current head.
    superseded = await store.write(
        1, "p", b"old" if kind != "tombstone" else TOMBSTONE, write_id="w2", clock=lambda: 4.0,
        precondition=None, result_for=_recording([]), generation=1)
    assert superseded.outcome is CommitOutcome.SUPERSEDED
    assert superseded.result == {"generation": 1}
    # ... and its answer is remembered for its write id.
    assert await store.write_result(1, "p", "w2") == {"generation": 1}

    assert await store.current_head(1, "p") == current
    assert _pending_rows(tmp_path, 1) == 0
    assert sorted({f.split("/")[0] for f in _files(tmp_path / "disk0/slots/1/blobs/p")}) == (
        ["g.1"] if kind == "tombstone" else ["g.1", "g.2"])
    await store.close()


@pytest.mark.parametrize("kind", ["bytes", "tombstone"])
async def test_whole_writes_take_one_worker_thread_call(tmp_path: Path, kind: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _open(tmp_path)
    await _put(store, 2, "x", b"first")
    calls: list[object] = []
    real = store._thread

    async def counting(fn: Callable[..., Any], *args: Any) -> Any:
        calls.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(store, "_thread", counting)
    report = await store.write(2, "x", b"second" if kind == "bytes" else TOMBSTONE,
                               write_id="w", clock=lambda: 1.0, precondition=None,
                               result_for=lambda h: {"g": h.generation})
    assert report.outcome is CommitOutcome.APPLIED and len(calls) == 1
    await store.close()


@pytest.mark.parametrize("kind", ["bytes", "stream", "tombstone"])
async def test_exception_before_commit_removes_files_and_marker(tmp_path: Path,
                                                                kind: str) -> None:
    store = await _open(tmp_path)

    def broken(head: Head) -> dict[str, Any]:
        raise RuntimeError("no result")

    content: Any = {"bytes": b"z" * (PART * 2), "stream": _chunks(b"z" * (PART * 2)),
                    "tombstone": TOMBSTONE}[kind]
    with pytest.raises(RuntimeError, match="no result"):
        await store.write(4, "e", content, write_id="w", clock=lambda: 1.0, precondition=None,
                          result_for=broken)
    assert _files(tmp_path / "disk0/slots/4/blobs") == []
    assert not (tmp_path / "disk0/slots/4/blobs/e/g.1").exists()
    assert _pending_rows(tmp_path, 4) == 0
    assert await store.current_head(4, "e") is None
    assert await store.write_result(4, "e", "w") is None
    await store.close()


@pytest.mark.parametrize("kind", ["bytes", "stream"])
async def test_full_disk_is_reported_and_cleaned_up(tmp_path: Path, kind: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _open(tmp_path)
    real = ObjectWriter.write_pieces
    written: list[int] = []

    def filling(self: ObjectWriter, pieces: Sequence[Piece]) -> None:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(sum(len(p.view) for p in pieces))
        real(self, pieces)

    monkeypatch.setattr(ObjectWriter, "write_pieces", filling)
    data = b"f" * (PART * 2)
    content: Any = data if kind == "bytes" else _chunks(data, PART)
    if kind == "bytes":
        written.append(0)  # one call writes it all: fail at once
    with pytest.raises(InsufficientStorage):
        await store.write(2, "full", content, write_id="", clock=lambda: 1.0, precondition=None,
                          result_for=lambda h: {})
    assert _files(tmp_path / "disk0/slots/2/blobs") == []
    assert _pending_rows(tmp_path, 2) == 0
    await store.close()


async def test_write_id_replay_and_preconditions(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    outcome, _ = await _put(store, 1, "p", b"v1", write_id="w1")
    assert outcome is CommitOutcome.APPLIED
    assert await store.write_result(1, "p", "w1") == {"generation": 1}
    outcome, _ = await _put(store, 1, "p", b"v1", write_id="w1")
    assert outcome is CommitOutcome.REPLAY
    assert await _read_all(store, 1, "p") == b"v1"
    for pre in (Precondition(if_match=("nope",)), Precondition(if_none_match_any=True)):
        report = await store.write(1, "p", _chunks(b"v2"), write_id="", clock=lambda: 3.0,
                                   precondition=pre, result_for=lambda h: {})
        assert report.outcome is CommitOutcome.PRECONDITION_FAILED
    assert await _read_all(store, 1, "p") == b"v1"
    await store.close()


async def test_checks_are_repeated_when_the_head_commits(tmp_path: Path) -> None:
    """A streamed write passes the checks at its start; another write commits
    while it is still receiving; its commit then refuses it."""
    store = await _open(tmp_path)
    reports: dict[str, WriteReport] = {}

    async def slow(name: str, gate: Gate, write_id: str, pre: Precondition | None) -> None:
        reports[name] = await store.write(3, name, gate.body(), write_id=write_id,
                                          clock=lambda: 1.0, precondition=pre,
                                          result_for=_recording([]))

    cases = {"create": ("", Precondition(if_none_match_any=True)), "retry": ("w", None)}
    gates = {name: Gate(b"slow" * 300, b"tail") for name in cases}
    async with trio.open_nursery() as nursery:
        for name, (write_id, pre) in cases.items():
            nursery.start_soon(slow, name, gates[name], write_id, pre)
            await gates[name].sent.wait()
            # meanwhile the same path is written (the retry: with the same write id)
            report = await store.write(3, name, b"fast", write_id=write_id, clock=lambda: 1.0,
                                       precondition=None, result_for=_recording([]))
            assert report.outcome is CommitOutcome.APPLIED
            gates[name].open.set()
    assert reports["create"].outcome is CommitOutcome.PRECONDITION_FAILED
    assert reports["create"].current is not None and reports["create"].current.generation == 2
    assert reports["retry"].outcome is CommitOutcome.REPLAY
    assert reports["retry"].result == {"generation": 2}
    for name in cases:
        assert await _read_all(store, 3, name) == b"fast"
        assert not (tmp_path / f"disk0/slots/3/blobs/{name}/g.1").exists()
    assert _pending_rows(tmp_path, 3) == 0
    await store.close()


async def test_lower_generation_is_superseded(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    gate = Gate(b"ol", b"d")
    reports: list[WriteReport] = []

    async def first() -> None:
        reports.append(await store.write(1, "race", gate.body(), write_id="", clock=lambda: 1.0,
                                         precondition=None, result_for=_recording([])))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)  # reserves generation 1, then waits for its body
        await gate.sent.wait()
        second = await store.write(1, "race", _chunks(b"new"), write_id="", clock=lambda: 1.0,
                                   precondition=None, result_for=_recording([]))
        assert second.result == {"generation": 2}
        gate.open.set()
    assert reports[0].outcome is CommitOutcome.SUPERSEDED
    assert reports[0].result == {"generation": 1}
    assert await _read_all(store, 1, "race") == b"new"
    assert not (tmp_path / "disk0/slots/1/blobs/race/g.1").exists()
    await store.close()


async def test_list_across_slots_and_disks_with_cursor(tmp_path: Path) -> None:
    store = await _open(tmp_path, disks=2)
    names = [f"dir/{i:03d}" for i in range(30)] + ["dis", "other/x"]
    for i, name in enumerate(names):
        await _put(store, i % 16, name, b"z")
    await store.write(5, "dir/005", TOMBSTONE, write_id="", clock=lambda: 1.0,
                      precondition=None, result_for=lambda h: {}, generation=9)
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
    assert with_deleted[5].deleted and with_deleted[5].generation == 9
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
        assert head is not None
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
    gate = Gate(b"a" * 10)
    reports: list[WriteReport] = []

    async def inflight() -> None:
        reports.append(await store.write(0, "inflight", gate.body(), write_id="",
                                         clock=lambda: 1.0, precondition=None,
                                         result_for=lambda h: {}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(inflight)
        await gate.sent.wait()
        for slot in range(1, 8):
            await _put(store, slot, f"p{slot}", str(slot).encode())
        assert store._cache.open_count <= 2
        gate.open.set()
    # reopening slot 0 did not "recover" (delete) the write that was still running
    assert reports[0].outcome is CommitOutcome.APPLIED and store.recovered_writes == 0
    assert await _read_all(store, 0, "inflight") == b"a" * 10
    for slot in range(1, 8):
        assert await _read_all(store, slot, f"p{slot}") == str(slot).encode()
    await store.close()


async def test_small_write_and_read_in_one_call(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    first = await store.write(
        3, "s", b"x" * (PART + 5), write_id="w", clock=lambda: 1.0, precondition=None,
        result_for=lambda h: {"generation": h.generation, "etag": h.etag})
    assert first.outcome is CommitOutcome.APPLIED and first.result is not None
    assert first.result["etag"] == hashlib.sha256(b"x" * (PART + 5)).hexdigest()
    again = await store.write(
        3, "s", b"other", write_id="w", clock=lambda: 2.0, precondition=None,
        result_for=lambda h: {"generation": h.generation})
    assert again.outcome is CommitOutcome.REPLAY and again.result == first.result
    refused = await store.write(
        3, "s", b"new", write_id="", clock=lambda: 2.0,
        precondition=Precondition(if_none_match_any=True), result_for=lambda h: {})
    assert refused.outcome is CommitOutcome.PRECONDITION_FAILED
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


def test_pipelined_steps_write_what_one_call_writes(tmp_path: Path) -> None:
    """cut / write_pieces / hash_pieces / seal, as the store pipelines them
    (hashing before writing, sealing late), give the records and files that
    `write` gives in one call, for batches that are buffers or chunk lists."""
    data = os.urandom(PART * 3 + 123)
    one = ObjectWriter(tmp_path / "a", "blobs/x/g.1", PART)
    one.write(data[:5000])
    one.write([data[5000:9000], memoryview(data)[9000:]])
    expected = one.finish()
    # (the pipelining caller hashes the whole object itself)
    split = ObjectWriter(tmp_path / "b", "blobs/x/g.1", PART, hash_object=False)
    full: list[int] = []
    for batch in ([data[:5000]], data[5000:PART * 2 + 7], [data[PART * 2 + 7:]]):
        pieces = split.cut(batch)
        assert all(len(p.view) <= PART for p in pieces)
        split.hash_pieces(pieces)
        split.write_pieces(pieces)
        full.extend(split.full_parts(pieces))
        if len(full) > 1:  # seal a part one batch late, as the sealer may
            split.seal(full.pop(0))
    for index in full:
        split.seal(index)
    got = split.finish()
    assert (got[0], got[2]) == (expected[0], expected[2]) and got[1] == ""
    assert expected[2] == len(data) and expected[1] == hashlib.sha256(data).hexdigest()
    assert [p.index for p in got[0]] == [0, 1, 2, 3]
    for record in got[0]:
        body = (tmp_path / "b" / str(record.local_path)).read_bytes()
        assert hashlib.sha256(body).hexdigest() == record.sha256
    assert not [p for p in (tmp_path / "b/blobs/x/g.1").iterdir() if p.name.startswith(".tmp")]


async def test_a_failing_seal_leaves_nothing_behind(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _open(tmp_path)
    real = ObjectWriter.seal
    sealed: list[int] = []

    def failing(self: ObjectWriter, index: int) -> None:
        if sealed:
            raise OSError(errno.EIO, "Input/output error")
        sealed.append(index)
        real(self, index)

    monkeypatch.setattr(ObjectWriter, "seal", failing)

    async def batches() -> AsyncIterator[list[bytes]]:
        for _ in range(4):
            yield [os.urandom(PART // 2), os.urandom(PART // 2)]

    with pytest.raises(DiskError):
        await store.write(3, "sealed", batches(), write_id="", clock=lambda: 1.0,
                          precondition=None, result_for=lambda h: {})
    assert _files(tmp_path / "disk0/slots/3/blobs") == []
    assert _pending_rows(tmp_path, 3) == 0
    assert await store.current_head(3, "sealed") is None
    await store.close()
