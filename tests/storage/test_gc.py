"""Garbage collection on real stores (storage/gc.py, rfcs/0016): the unlink
journal across a crash, superseded heads and orphans by the monotonic clock
whatever the wall clock does, the race with writes in progress, empty
directory chains, write-result expiry, pacing, and reads that outlive the grace."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from rimio.core.head import Head
from rimio.core.replica import PartInfo
from rimio.core.writes import CommitOutcome
from rimio.storage.gc import GcPolicy
from rimio.storage.meta import SCHEMA_VERSION, group_file
from rimio.storage.store import LocalStore
from rimio.storage.writes import TOMBSTONE

PART = 4096
SLOT = 3


async def _open(root: Path, *, part_size: int = PART, inline_io: bool = False) -> LocalStore:
    store = LocalStore([root / "disk0"], total_slots=16, part_size=part_size, io_threads=4,
                       inline_max_bytes=0, read_cache_bytes=0, inline_io=inline_io)
    await store.open()
    return store


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def _put(store: LocalStore, path: str, data: bytes, *, at: float = 2.0,
               write_id: str = "", slot: int = SLOT) -> Head:
    heads: list[Head] = []

    def result_for(head: Head) -> dict[str, object]:
        heads.append(head)
        return {"generation": head.generation}

    report = await store.write(slot, path, _chunks(data), write_id=write_id, clock=lambda: at,
                               precondition=None, result_for=result_for)
    assert report.outcome is CommitOutcome.APPLIED
    return heads[-1]


async def _read(store: LocalStore, path: str) -> bytes:
    obj = await store.get_object(SLOT, path)
    assert obj is not None
    out = bytearray()
    async for chunk in store.read_object(obj, 0, obj.head.size_bytes - 1):
        out += chunk
    return bytes(out)


def _blobs(root: Path, slot: int = SLOT) -> Path:
    return root / "disk0" / "slots" / str(slot) / "blobs"


def _files(root: Path, slot: int = SLOT) -> set[str]:
    base = _blobs(root, slot)
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}


def _dirs(root: Path, slot: int = SLOT) -> set[str]:
    base = _blobs(root, slot)
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_dir()}


def _query(root: Path, sql: str, slot: int = SLOT) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{group_file(root / 'disk0', slot)}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _named(root: Path, slot: int = SLOT) -> set[str]:
    """The part files the rows of `slot` name, relative to its blobs directory."""
    rows = _query(root, f"SELECT local_path FROM file_entries WHERE slot_id = {slot} "
                        "AND entry_kind = 'part' AND local_path IS NOT NULL", slot)
    return {str(r[0]).removeprefix("blobs/") for r in rows}


class Clocks:
    """A wall clock and a monotonic clock the test sets by hand."""

    def __init__(self, wall: float = 100.0, mono: float = 0.0) -> None:
        self.wall_now, self.mono_now = wall, mono

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now


def _policy(grace: float, **kw: float) -> GcPolicy:
    return GcPolicy(grace_seconds=grace, files_per_second=kw.pop("files_per_second", 1e6), **kw)


# -- the unlink journal --------------------------------------------------------------


async def test_a_crash_between_deleting_rows_and_unlinking_leaks_nothing(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    old = await _put(store, "obj", os.urandom(3 * PART + 1))
    await _put(store, "obj", b"new")
    old_files = {f for f in _files(tmp_path) if f.startswith("obj/g.1/")}
    assert len(old_files) == 4
    # The first step alone (rows deleted, files journaled in the same
    # transaction), then the process dies before it unlinks anything.
    with store._cache.acquire(SLOT) as meta:
        assert meta.doom_head("obj", old.generation, old.sha256) == 4
    await store.close()
    assert _files(tmp_path) >= old_files  # still there, and journaled:
    journaled = {str(r[0]).removeprefix("blobs/")
                 for r in _query(tmp_path, "SELECT local_path FROM doomed_files")}
    assert journaled == old_files
    assert not old_files & _named(tmp_path)
    # The next start finishes the journal before serving.
    again = await _open(tmp_path)
    assert _files(tmp_path) == _named(tmp_path)
    assert _query(tmp_path, "SELECT COUNT(*) FROM doomed_files") == [(0,)]
    assert "obj/g.1" not in _dirs(tmp_path)  # the emptied directory went too
    assert again.gc_stats()["journal_replayed"] == 4
    assert await _read(again, "obj") == b"new"
    await again.close()


async def test_a_crash_after_some_unlinks_is_finished_by_the_next_sweep(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    old = await _put(store, "obj", os.urandom(2 * PART))
    await _put(store, "obj", b"new")
    with store._cache.acquire(SLOT) as meta:
        meta.doom_head("obj", old.generation, old.sha256)
    first = sorted(f for f in _files(tmp_path) if f.startswith("obj/g.1/"))[0]
    os.unlink(_blobs(tmp_path) / first)  # unlinked, but its journal entry not cleared
    clocks = Clocks()
    await store.gc_sweep(_policy(600), wall=clocks.wall, mono=clocks.mono)
    assert _files(tmp_path) == _named(tmp_path)
    assert _query(tmp_path, "SELECT COUNT(*) FROM doomed_files") == [(0,)]
    stats = store.gc_stats()
    assert stats["files_unlinked"] == 1 and stats["bytes_freed"] == PART
    await store.close()


async def test_a_journaled_file_a_write_uses_again_is_not_unlinked(tmp_path: Path) -> None:
    # A replica upload of the doomed generation reuses the file already
    # there (same name, same bytes): the journal must leave it.
    store = await _open(tmp_path)
    data = os.urandom(PART)
    old = await _put(store, "obj", data)
    await _put(store, "obj", b"new")
    with store._cache.acquire(SLOT) as meta:
        meta.doom_head("obj", old.generation, old.sha256)
    record = await store.put_part(SLOT, "obj", old.generation, 0, _chunks(data),
                                  clock=lambda: 3.0)
    clocks = Clocks()
    await store.gc_sweep(_policy(600), wall=clocks.wall, mono=clocks.mono)
    assert record.local_path is not None
    assert (tmp_path / "disk0/slots" / str(SLOT) / record.local_path).exists()
    await store.abort_generation(SLOT, "obj", old.generation)
    assert _files(tmp_path) == _named(tmp_path)
    await store.close()


async def test_schema_5_databases_gain_the_journal(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "obj", b"x" * 10, write_id="w1")
    await store.close()
    db = sqlite3.connect(group_file(tmp_path / "disk0", SLOT))
    db.executescript("DROP TABLE doomed_files; DROP INDEX wr_created; PRAGMA user_version=5;")
    db.close()
    store = await _open(tmp_path)
    assert _query(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _query(tmp_path, "SELECT COUNT(*) FROM doomed_files") == [(0,)]
    assert await store.write_result(SLOT, "obj", "w1") is not None
    await store.close()


# -- superseded heads: wall clock and monotonic clock ------------------------------


async def test_superseded_heads_wait_the_grace_on_the_monotonic_clock(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "obj", os.urandom(PART + 1), at=100.0)
    await _put(store, "obj", b"new", at=100.0)
    clocks = Clocks(wall=100.0, mono=0.0)
    policy = _policy(60)
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    # The wall clock steps a day ahead: by it the head is long superseded.
    clocks.wall_now, clocks.mono_now = 100.0 + 86400, 30.0
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert any(f.startswith("obj/g.1/") for f in _files(tmp_path))
    assert store.gc_stats()["superseded_removed"] == 0
    # 60 s later on the monotonic clock since it was first seen superseded:
    clocks.mono_now = 60.0
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert _files(tmp_path) == _named(tmp_path) and not any(
        f.startswith("obj/g.1/") for f in _files(tmp_path))
    assert store.gc_stats()["superseded_removed"] == 1
    await store.close()


async def test_a_head_superseded_after_a_checkpoint_waits_for_a_later_one(
        tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "obj", os.urandom(PART), at=100.0)
    clocks = Clocks(wall=100.0, mono=0.0)
    policy = _policy(60)
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)  # checkpoint at 0
    await _put(store, "obj", b"new", at=100.0)  # superseded after it
    clocks.wall_now, clocks.mono_now = 10_000.0, 60.0
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)  # checkpoint 0 settled
    assert store.gc_stats()["superseded_removed"] == 0
    clocks.mono_now = 120.0  # checkpoint 60 (after the supersession) settled
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert store.gc_stats()["superseded_removed"] == 1
    await store.close()


async def test_a_wall_clock_stepped_back_only_delays_collection(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "obj", os.urandom(PART), at=5000.0)
    await _put(store, "obj", b"new", at=5000.0)
    clocks = Clocks(wall=5000.0, mono=0.0)
    policy = _policy(60)
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    clocks.wall_now, clocks.mono_now = 1000.0, 100.0  # an hour back
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert store.gc_stats()["superseded_removed"] == 0
    clocks.wall_now, clocks.mono_now = 5061.0, 200.0
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert store.gc_stats()["superseded_removed"] == 1
    await store.close()


async def test_current_tombstones_are_left_to_their_own_purge(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "obj", os.urandom(PART), at=1.0)
    await store.write(SLOT, "obj", TOMBSTONE, write_id="", clock=lambda: 1.0,
                      precondition=None, result_for=lambda h: {})
    clocks = Clocks(wall=1e6, mono=0.0)
    await store.gc_sweep(_policy(0), wall=clocks.wall, mono=clocks.mono)
    head = await store.current_head(SLOT, "obj")
    assert head is not None and head.deleted
    assert _files(tmp_path) == set()
    assert store.gc_stats()["superseded_removed"] == 1
    await store.close()


# -- orphans -------------------------------------------------------------------------


def _orphan(root: Path, rel: str, size: int = 100) -> Path:
    path = _blobs(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"o" * size)
    return path


async def test_orphans_go_after_the_grace_on_the_monotonic_clock(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "kept", os.urandom(PART + 5))
    kept = _files(tmp_path)
    # What a write whose marker was lost with the power leaves: files no row
    # names, a temp file, and an empty directory chain.
    _orphan(tmp_path, "lost/a/g.3/part.00000000." + "0" * 64)
    _orphan(tmp_path, "lost/a/g.3/.tmp-0123")
    _orphan(tmp_path, "kept/g.7/part.00000000." + "1" * 64)
    (_blobs(tmp_path) / "empty/chain/g.2").mkdir(parents=True)
    clocks = Clocks(wall=100.0, mono=0.0)
    policy = _policy(30)
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    clocks.wall_now, clocks.mono_now = 1e9, 29.0  # the wall clock jumps: no matter
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert len(_files(tmp_path)) == len(kept) + 3
    assert store.gc_stats()["orphans_watched"] == 4
    clocks.mono_now = 30.0
    await store.gc_sweep(policy, wall=clocks.wall, mono=clocks.mono)
    assert _files(tmp_path) == kept
    assert _dirs(tmp_path) == {"kept", "kept/g.1"}
    stats = store.gc_stats()
    assert stats["orphans_removed"] == 4 and stats["bytes_freed"] == 300
    assert await _read(store, "kept") is not None
    await store.close()


async def test_an_orphan_that_a_row_names_again_is_forgotten(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(PART)
    await _put(store, "obj", data)
    name = next(iter(_files(tmp_path)))
    # The same bytes at generation 5, by hand: an orphan...
    orphan = _orphan(tmp_path, name.replace("g.1", "g.5"), 0)
    orphan.write_bytes(data)
    clocks = Clocks()
    await store.gc_sweep(_policy(10), wall=clocks.wall, mono=clocks.mono)
    assert store.gc_stats()["orphans_watched"] == 1
    # ...until an upload of generation 5 reuses it (same name, same bytes).
    await store.put_part(SLOT, "obj", 5, 0, _chunks(data), clock=lambda: 3.0)
    clocks.mono_now = 100.0
    await store.gc_sweep(_policy(10), wall=clocks.wall, mono=clocks.mono)
    assert orphan.exists() and store.gc_stats()["orphans_removed"] == 0
    await store.close()


async def test_the_sweep_never_takes_the_files_of_a_write_in_progress(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(3 * PART + 17)
    sent, go_on = trio.Event(), trio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield data[:2 * PART + 5]  # two sealed parts and a temp file
        sent.set()
        await go_on.wait()
        yield data[2 * PART + 5:]

    clocks = Clocks()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: store.write(SLOT, "busy", body(), write_id="",
                                               clock=lambda: 2.0, precondition=None,
                                               result_for=lambda h: {}))
        await sent.wait()
        while len(_files(tmp_path)) < 3:  # noqa: ASYNC110 - the writer threads at work
            await trio.sleep(0.01)
        for step in range(3):  # grace 0: anything orphaned would go at once
            clocks.mono_now = float(step)
            await store.gc_sweep(_policy(0), wall=clocks.wall, mono=clocks.mono)
        assert len(_files(tmp_path)) >= 3
        assert store.gc_stats()["orphans_removed"] == 0
        go_on.set()
    assert await _read(store, "busy") == data
    assert _files(tmp_path) == _named(tmp_path)
    await store.close()


async def test_uploads_waiting_for_their_head_are_not_orphans(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(2 * PART)
    records = [await store.put_part(SLOT, "up", 4, i, _chunks(data[i * PART:(i + 1) * PART]),
                                    clock=lambda: 2.0) for i in range(2)]
    clocks = Clocks()
    for step in range(2):
        clocks.mono_now = float(step)
        await store.gc_sweep(_policy(0), wall=clocks.wall, mono=clocks.mono)
    assert len(_files(tmp_path)) == 2
    head = Head(kind="meta", path="up", slot_id=SLOT, generation=4, write_id="w",
                size_bytes=len(data), etag=hashlib.sha256(data).hexdigest(), part_size=PART,
                part_count=2, timestamp=2.0)
    parts = [PartInfo(r.index, r.sha256, r.size_bytes) for r in records]
    applied, _ = await store.apply_head(head, parts, None, None, clock=lambda: 2.0)
    assert applied and await _read(store, "up") == data
    await store.close()


async def test_orphan_unlinks_are_paced(tmp_path: Path,
                                        autojump_clock: trio.testing.MockClock) -> None:
    store = await _open(tmp_path, inline_io=True)
    for i in range(200):
        _orphan(tmp_path, f"o/g.1/part.{i:08d}." + "0" * 64, 1)
    policy = _policy(0, files_per_second=50)
    start = trio.current_time()
    await store.gc_sweep(policy, wall=lambda: 1.0, mono=trio.current_time)
    took = trio.current_time() - start
    assert _files(tmp_path) == set() and store.gc_stats()["orphans_removed"] >= 200
    # 200 files at 50 per second with a burst of 50: at least 3 s (not much more)
    assert 2.9 <= took <= 5.0
    await store.close()


# -- aborted writes ----------------------------------------------------------------


async def test_aborted_writes_leave_no_empty_directory_chain(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "other", b"keep")  # the slot's directories stay for it
    gates = [trio.Event() for _ in range(2)]
    started = [trio.Event() for _ in range(2)]

    def failing(i: int) -> AsyncIterator[bytes]:
        async def body() -> AsyncIterator[bytes]:
            yield os.urandom(PART + 10)
            started[i].set()
            await gates[i].wait()
            raise ValueError("the client went away")
        return body()

    async def write(i: int) -> None:
        with pytest.raises(ValueError):
            await store.write(SLOT, "deep/er/path", failing(i), write_id="",
                              clock=lambda: 2.0, precondition=None, result_for=lambda h: {})

    async with trio.open_nursery() as nursery:
        for i in range(2):
            nursery.start_soon(write, i)
            await started[i].wait()
        while len(_files(tmp_path)) < 3:  # noqa: ASYNC110 - the writer threads at work
            await trio.sleep(0.01)
        gates[0].set()  # the first aborts while the second still uses the chain
        await trio.sleep(0.05)
        gates[1].set()  # then the second, which did not make the chain itself
    assert _dirs(tmp_path) == {"other", "other/g.1"}
    await store.close()


async def test_an_aborted_upload_leaves_no_empty_directory_chain(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "other", b"keep")

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise ValueError("the peer went away")

    with pytest.raises(ValueError):
        await store.put_part(SLOT, "a/b/c", 3, 0, failing(), clock=lambda: 2.0)
    await store.put_part(SLOT, "a/b/d", 3, 0, _chunks(b"y" * 100), clock=lambda: 2.0)
    await store.abort_generation(SLOT, "a/b/d", 3)
    assert _dirs(tmp_path) == {"other", "other/g.1"}
    await store.close()


# -- write results -------------------------------------------------------------------


async def test_write_results_expire_after_their_time_to_live(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "a", b"1", at=1000.0, write_id="w-old")
    await _put(store, "b", b"2", at=5000.0, write_id="w-new")
    policy = _policy(600, write_result_ttl_seconds=3600)
    await store.gc_sweep(policy, wall=lambda: 4000.0, mono=lambda: 0.0)
    assert await store.write_result(SLOT, "a", "w-old") is not None
    await store.gc_sweep(policy, wall=lambda: 4601.0, mono=lambda: 601.0)
    assert await store.write_result(SLOT, "a", "w-old") is None
    assert await store.write_result(SLOT, "b", "w-new") is not None
    assert store.gc_stats()["write_results_expired"] == 1
    await store.close()


async def test_a_wall_clock_step_ahead_does_not_expire_write_results(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _put(store, "a", b"1", at=1000.0, write_id="w")
    policy = _policy(600, write_result_ttl_seconds=3600)
    await store.gc_sweep(policy, wall=lambda: 1000.0, mono=lambda: 0.0)
    # A day ahead on the wall clock, a minute on the monotonic one:
    await store.gc_sweep(policy, wall=lambda: 1000.0 + 86400, mono=lambda: 60.0)
    assert await store.write_result(SLOT, "a", "w") is not None
    await store.gc_sweep(policy, wall=lambda: 1000.0 + 86400 + 3600, mono=lambda: 3661.0)
    assert await store.write_result(SLOT, "a", "w") is None
    await store.close()


# -- reads that outlive the grace ----------------------------------------------------


async def test_a_read_streaming_across_a_collection_completes(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(5 * PART + 3)
    await _put(store, "long", data)
    obj = await store.get_object(SLOT, "long")
    assert obj is not None
    stream = store.read_object(obj, 0, len(data) - 1)
    out = bytearray(await stream.__anext__())
    # Superseded and collected with no grace while the read is half-way:
    await _put(store, "long", b"new")
    clocks = Clocks(wall=1e6)
    for step in range(2):
        clocks.mono_now = float(step)
        await store.gc_sweep(_policy(0), wall=clocks.wall, mono=clocks.mono)
    async for chunk in stream:
        out += chunk
    assert bytes(out) == data
    assert store.gc_stats()["superseded_removed"] == 0  # the lease held it
    clocks.mono_now = 2.0
    await store.gc_sweep(_policy(0), wall=clocks.wall, mono=clocks.mono)
    assert store.gc_stats()["superseded_removed"] == 1
    assert _files(tmp_path) == _named(tmp_path)
    await store.close()


async def test_a_part_file_unlinked_mid_stream_is_read_to_its_end(tmp_path: Path) -> None:
    # A part larger than the verify buffer streams chunk by chunk from one
    # open file: unlinking it (POSIX) does not cut the read.
    store = await _open(tmp_path, part_size=4 * 1024 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 11)
    await _put(store, "big", data)
    obj = await store.get_object(SLOT, "big")
    assert obj is not None
    stream = store.read_object(obj, 0, len(data) - 1)
    out = bytearray(await stream.__anext__())
    for name in _files(tmp_path):
        os.unlink(_blobs(tmp_path) / name)
    async for chunk in stream:
        out += chunk
    assert bytes(out) == data
    await store.close()
