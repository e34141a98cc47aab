"""Small objects inline in the slot's SQLite row: the same heads, reads,
checks, tombstones and GC as part files, with no file and one transaction;
the v1 → v2 schema migration; the syscalls and slot-database opens a write
costs."""

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from rimio.core.head import Head
from rimio.core.writes import MUST_EXIST, CommitOutcome, Precondition, WriteReport
from rimio.storage import parts as parts_module
from rimio.storage.meta import SCHEMA_VERSION, group_file
from rimio.storage.store import LocalStore
from rimio.storage.writes import TOMBSTONE

PART = 64 * 1024
INLINE = 1000


async def _open(root: Path, inline: int = INLINE, **kw: Any) -> LocalStore:
    store = LocalStore([root], total_slots=16, part_size=PART, io_threads=4,
                       inline_max_bytes=inline, **kw)
    await store.open()
    return store


def _heads(into: list[Head]) -> Callable[[Head], dict[str, Any]]:
    def result_for(head: Head) -> dict[str, Any]:
        into.append(head)
        return {"generation": head.generation, "etag": head.etag}

    return result_for


async def _write(store: LocalStore, slot: int, path: str, content: Any, *, write_id: str = "",
                 precondition: Precondition | None = None, now: float = 1.0,
                 heads: list[Head] | None = None) -> WriteReport:
    return await store.write(slot, path, content, write_id=write_id, clock=lambda: now,
                             precondition=precondition,
                             result_for=_heads([] if heads is None else heads))


async def _read(store: LocalStore, slot: int, path: str, start: int = 0,
                end: int | None = None) -> bytes:
    obj = await store.get_object(slot, path)
    assert obj is not None
    stop = obj.head.size_bytes - 1 if end is None else end
    out = bytearray()
    async for chunk in store.read_object(obj, start, stop):
        out += chunk
    return bytes(out)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and p.name.startswith("part."))


def _rows(root: Path, slot: int, sql: str) -> list[tuple[Any, ...]]:
    """`sql` on the group database of `slot` (the tests' slots each have a group of their own)."""
    db = sqlite3.connect(group_file(root, slot))
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


@pytest.mark.parametrize("size", [INLINE - 1, INLINE, INLINE + 1])
async def test_threshold_boundary_and_identical_heads(tmp_path: Path, size: int) -> None:
    inline_store = await _open(tmp_path / "inline")
    file_store = await _open(tmp_path / "files", inline=0)
    data = os.urandom(size)
    heads: list[Head] = []
    for store in (inline_store, file_store):
        report = await _write(store, 3, "b/obj", data, heads=heads)
        assert report.outcome is CommitOutcome.APPLIED
        assert await _read(store, 3, "b/obj") == data
    inline_head, file_head = heads
    # The head does not say where the bytes are: replicas and anti-entropy see no difference.
    assert inline_head == file_head and inline_head.sha256 == file_head.sha256
    assert inline_head.etag == hashlib.sha256(data).hexdigest()
    assert inline_head.part_count == 1 and inline_head.part_size == PART
    assert _files(tmp_path / "files") != []
    if size <= INLINE:
        assert _files(tmp_path / "inline") == []
        assert not (tmp_path / "inline/slots/3/blobs").exists()
        assert _rows(tmp_path / "inline", 3, "SELECT local_path, length(inline_data) FROM "
                     "file_entries WHERE entry_kind = 'part'") == [(None, size)]
    else:
        assert len(_files(tmp_path / "inline")) == 1
    for store in (inline_store, file_store):
        await store.close()


async def test_inline_limit_is_capped_at_the_part_size(tmp_path: Path) -> None:
    store = LocalStore([tmp_path], total_slots=4, part_size=4096, inline_max_bytes=64 * 1024)
    assert store.inline_max_bytes == 4096
    from rimio.core.errors import ConfigError

    with pytest.raises(ConfigError):
        LocalStore([tmp_path], total_slots=4, part_size=4096, inline_max_bytes=-1)


async def test_ranges_on_inline_objects(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(INLINE)
    await _write(store, 2, "r", data)
    for start, end in [(0, 0), (0, INLINE - 1), (10, 19), (INLINE - 1, INLINE - 1), (500, 998)]:
        # get_object leaves the bytes in SQLite: each range is read from the row
        assert await _read(store, 2, "r", start, end) == data[start:end + 1]
    obj, whole = await store.read_small(2, "r", INLINE)
    assert obj is not None and whole == data
    assert obj.parts[0].data == data  # loaded with the head: ranges need no second hop
    async for chunk in store.read_object(obj, 7, 9):
        assert chunk == data[7:10]
    obj, none = await store.read_small(2, "r", INLINE - 1)
    assert obj is not None and none is None and obj.parts[0].data is None
    await store.check_parts_present(obj)  # nothing to stat for an inline part
    await store.close()


async def test_empty_object_inline(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    heads: list[Head] = []
    await _write(store, 1, "empty", b"", heads=heads)
    assert heads[0].size_bytes == 0 and heads[0].part_count == 0
    assert heads[0].etag == hashlib.sha256(b"").hexdigest()
    obj, data = await store.read_small(1, "empty", 100)
    assert obj is not None and data == b""
    await store.close()


async def test_replay_and_preconditions_inline(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    first = await _write(store, 1, "p", b"one", write_id="w1",
                         precondition=Precondition(if_none_match_any=True))
    assert first.outcome is CommitOutcome.APPLIED and first.result is not None
    etag = first.result["etag"]
    replay = await _write(store, 1, "p", b"different", write_id="w1")
    assert replay.outcome is CommitOutcome.REPLAY and replay.result == first.result
    for pre in (Precondition(if_none_match_any=True), Precondition(if_match=("nope",))):
        refused = await _write(store, 1, "p", b"two", precondition=pre)
        assert refused.outcome is CommitOutcome.PRECONDITION_FAILED
        assert refused.current is not None and refused.current.etag == etag
    matched = await _write(store, 1, "p", b"two", precondition=Precondition(if_match=(etag,)))
    assert matched.outcome is CommitOutcome.APPLIED and matched.result is not None
    assert matched.result["generation"] == 2
    # A replica's seam: a given generation that loses is superseded, and remembered.
    lost = await store.write(1, "p", b"old", write_id="w2", clock=lambda: 1.0,
                             precondition=None, result_for=_heads([]), generation=1)
    assert lost.outcome is CommitOutcome.SUPERSEDED
    assert await store.write_result(1, "p", "w2") == lost.result
    assert await _read(store, 1, "p") == b"two"
    assert _rows(tmp_path, 1, "SELECT COUNT(*) FROM file_entries WHERE entry_kind = 'pending'"
                 ) == [(0,)]
    await store.close()


async def test_tombstone_over_inline_and_gc_deletes_rows_only(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _write(store, 4, "g", b"v1", now=1.0)
    await _write(store, 4, "g", b"v2", now=2.0)
    deleted = await _write(store, 4, "g", TOMBSTONE, precondition=MUST_EXIST, now=3.0)
    assert deleted.outcome is CommitOutcome.APPLIED
    head = await store.current_head(4, "g")
    assert head is not None and head.deleted and head.generation == 3
    obj, data = await store.read_small(4, "g", 100)
    assert obj is not None and obj.head.deleted and data is None
    again = await _write(store, 4, "g", TOMBSTONE, precondition=MUST_EXIST)
    assert again.outcome is CommitOutcome.PRECONDITION_FAILED
    unlinked: list[str] = []
    real = parts_module.os.unlink
    parts_module.os.unlink = lambda p, *a, **k: (unlinked.append(str(p)),  # type: ignore[assignment]
                                                  real(p, *a, **k))[1]
    try:
        assert await store.collect_garbage(cutoff=10.0) == 2
    finally:
        parts_module.os.unlink = real  # type: ignore[assignment]
    assert unlinked == []
    assert _rows(tmp_path, 4, "SELECT entry_kind, generation FROM file_entries ORDER BY id") == [
        ("tombstone", 3)]
    # a new object after the delete
    await _write(store, 4, "g", b"v4")
    assert await _read(store, 4, "g") == b"v4"
    await store.close()


async def test_gc_keeps_inline_rows_within_grace_for_reads_in_flight(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _write(store, 5, "k", b"a" * 500, now=1.0)
    obj = await store.get_object(5, "k")
    assert obj is not None
    await _write(store, 5, "k", b"b" * 500, now=2.0)
    assert await store.collect_garbage(cutoff=1.5) == 0
    out = b"".join([c async for c in store.read_object(obj, 0, 499)])
    assert out == b"a" * 500  # the superseded row is still there
    await store.close()


async def test_inline_and_streamed_writes_share_generations(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    opened = trio.Event()
    release = trio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"s" * 10
        opened.set()
        await release.wait()

    reports: list[WriteReport] = []

    async def streamed() -> None:
        reports.append(await _write(store, 6, "hot", slow()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(streamed)
        await opened.wait()  # generation 1 is reserved by its pending marker
        inline = await _write(store, 6, "hot", b"fast")
        assert inline.result is not None and inline.result["generation"] == 2
        release.set()
    assert reports[0].outcome is CommitOutcome.SUPERSEDED
    assert await _read(store, 6, "hot") == b"fast"
    assert _files(tmp_path) == []  # the superseded stream removed its part
    await store.close()


async def test_exception_in_inline_commit_leaves_nothing(tmp_path: Path) -> None:
    store = await _open(tmp_path)

    def broken(head: Head) -> dict[str, Any]:
        raise RuntimeError("no result")

    with pytest.raises(RuntimeError):
        await store.write(7, "e", b"x", write_id="w", clock=lambda: 1.0, precondition=None,
                          result_for=broken)
    assert await store.current_head(7, "e") is None
    assert _rows(tmp_path, 7, "SELECT COUNT(*) FROM file_entries") == [(0,)]
    await store.close()


# -- schema migration ------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE file_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, generation INTEGER NOT NULL,
    entry_kind TEXT NOT NULL CHECK (entry_kind IN ('meta', 'tombstone', 'part', 'pending')),
    part_index INTEGER, head_sha256 TEXT, is_current INTEGER NOT NULL DEFAULT 0,
    head_json TEXT, write_id TEXT, sha256 TEXT, size_bytes INTEGER, local_path TEXT,
    archive_url TEXT, compression TEXT, created_at REAL NOT NULL, superseded_at REAL);
CREATE UNIQUE INDEX fe_current ON file_entries(path) WHERE is_current = 1;
CREATE INDEX fe_path_gen ON file_entries(path, generation);
CREATE INDEX fe_superseded ON file_entries(superseded_at) WHERE superseded_at IS NOT NULL;
CREATE INDEX fe_pending ON file_entries(entry_kind) WHERE entry_kind = 'pending';
CREATE TABLE write_results (path TEXT NOT NULL, write_id TEXT NOT NULL,
    result_json TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (path, write_id));
"""


async def test_version_1_slot_database_is_migrated_on_open(tmp_path: Path) -> None:
    # An object written by the old code: a part file and a v1 database naming it.
    first = await _open(tmp_path / "seed", inline=0)
    await _write(first, 2, "old", b"old bytes", write_id="w0")
    await first.close()
    seed = sqlite3.connect(group_file(tmp_path / "seed", 2))
    head_rows = seed.execute("SELECT path, generation, entry_kind, part_index, head_sha256,"
                             " is_current, head_json, write_id, sha256, size_bytes, local_path,"
                             " created_at FROM file_entries").fetchall()
    results = seed.execute(
        "SELECT path, write_id, result_json, created_at FROM write_results").fetchall()
    seed.close()
    slot_dir = tmp_path / "disk/slots/2"
    (slot_dir / "blobs").parent.mkdir(parents=True)
    os.rename(tmp_path / "seed/slots/2/blobs", slot_dir / "blobs")
    v1 = sqlite3.connect(slot_dir / "meta.sqlite3", isolation_level=None)
    v1.execute("PRAGMA journal_mode=WAL")
    v1.executescript(f"BEGIN; {_V1_SCHEMA} PRAGMA user_version=1; COMMIT;")
    v1.executemany("INSERT INTO file_entries (path, generation, entry_kind, part_index,"
                   " head_sha256, is_current, head_json, write_id, sha256, size_bytes,"
                   " local_path, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", head_rows)
    v1.executemany("INSERT INTO write_results VALUES (?,?,?,?)", results)
    v1.close()

    store = await _open(tmp_path / "disk")
    assert await _read(store, 2, "old") == b"old bytes"
    replay = await _write(store, 2, "old", b"again", write_id="w0")
    assert replay.outcome is CommitOutcome.REPLAY
    await _write(store, 2, "old", b"new inline bytes")
    assert await _read(store, 2, "old") == b"new inline bytes"
    await store.close()
    assert _rows(tmp_path / "disk", 2, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert not any(p.name.startswith("meta.sqlite3") for p in slot_dir.iterdir())
    assert _rows(tmp_path / "disk", 2, "SELECT generation, local_path IS NULL FROM file_entries"
                 " WHERE entry_kind = 'part' ORDER BY generation") == [(1, 0), (2, 1)]


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    from rimio.core.errors import StorageCorrupt
    from rimio.storage.meta import GroupMeta

    db_path = tmp_path / "m.sqlite3"
    GroupMeta(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageCorrupt, match="newer"):
        GroupMeta(db_path)


# -- syncs and directories ----------------------------------------------------------


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


async def test_inline_write_does_no_fsync_of_its_own(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _open(tmp_path)
    await _write(store, 1, "warm", b"x")  # the slot's database exists and is open
    calls = _count_fsyncs(monkeypatch)
    for path in ("new/path", "new/path", "warm"):
        await _write(store, 1, path, os.urandom(INLINE))
        await _write(store, 1, path, TOMBSTONE)
    # Python's os.fsync is never called: SQLite's one WAL sync per commit is all.
    assert calls == []
    await store.close()


async def test_part_file_write_fsyncs_only_what_is_new(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _open(tmp_path, inline=0)
    await _write(store, 1, "warm", b"x")
    parts_module.DURABLE_DIRS.clear()
    calls = _count_fsyncs(monkeypatch)
    await _write(store, 1, "a/b/c", b"first")
    # part, its generation directory, and the entries of blobs/a, a/b, a/b/c, c/g.1 -- plus
    # once per process the entry of blobs itself (found existing, not yet known)
    assert len(calls) == 2 + 4 + 1
    calls.clear()
    await _write(store, 1, "a/b/c", b"second")
    # part, generation directory, and g.2's entry in c: the chain is known
    assert len(calls) == 3
    calls.clear()
    await _write(store, 1, "a/b/d", b"sibling")
    assert len(calls) == 2 + 2  # d's entry in b and g.1's entry in d
    await store.close()


async def test_aborted_write_removes_the_directories_it_created(tmp_path: Path) -> None:
    store = await _open(tmp_path, inline=0)
    await _write(store, 1, "keep/x", b"kept")

    async def failing() -> AsyncIterator[bytes]:
        yield b"y" * 100
        raise ValueError("client went away")

    for path in ("deep/new/chain", "keep/x", "keep/sibling"):
        with pytest.raises(ValueError):
            await _write(store, 1, path, failing())
    blobs = tmp_path / "slots/1/blobs"
    assert sorted(str(p.relative_to(blobs)) for p in blobs.rglob("*")) == [
        "keep", "keep/x", "keep/x/g.1", f"keep/x/g.1/part.00000000.{hashlib.sha256(b'kept').hexdigest()}"]
    # ... and a later write into a removed chain recreates it
    await _write(store, 1, "deep/new/chain", b"z" * 5000)
    assert await _read(store, 1, "deep/new/chain") == b"z" * 5000
    await store.close()


# -- slot databases -------------------------------------------------------------------


async def test_slot_cache_counts_opens_creations_and_evictions(tmp_path: Path) -> None:
    store = await _open(tmp_path, max_open_slots=4)
    for slot in range(8):
        await _write(store, slot, "k", b"v")
    stats = store.slot_stats
    assert (stats.opens, stats.creations, stats.evictions) == (8, 8, 4)
    assert stats.open_now == 4
    for slot in range(4, 8):  # still open: no new opens
        await _write(store, slot, "k", b"w")
    assert store.slot_stats.opens == 8
    await _write(store, 0, "k", b"w")
    assert (store.slot_stats.opens, store.slot_stats.evictions) == (9, 5)
    await store.close()

    reopened = await _open(tmp_path, max_open_slots=4)  # start-up opens every slot once
    assert reopened.slot_stats.creations == 0 and reopened.slot_stats.opens == 8
    await reopened.close()
