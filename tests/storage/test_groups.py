"""Slot groups: slots share one metadata database per `GROUPS` slots and disk
(rfcs/0010-slot-groups.md), and per-slot databases of the previous layout are
migrated into them at start, surviving a crash at any step."""

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rimio.core.head import Head
from rimio.core.writes import CommitOutcome, WriteReport
from rimio.storage import migrate
from rimio.storage.meta import GROUPS, GroupMeta, group_file
from rimio.storage.store import LocalStore
from rimio.storage.writes import TOMBSTONE

PART = 4096
INLINE = 1000
SLOTS = 4 * GROUPS

# The per-slot schema, version 2, as the previous layout wrote it.
_V2_SCHEMA = """
CREATE TABLE file_entries (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL,
    generation INTEGER NOT NULL, entry_kind TEXT NOT NULL, part_index INTEGER,
    head_sha256 TEXT, is_current INTEGER NOT NULL DEFAULT 0,
    head_json TEXT, write_id TEXT, sha256 TEXT, size_bytes INTEGER, local_path TEXT,
    archive_url TEXT, compression TEXT, created_at REAL NOT NULL, superseded_at REAL,
    inline_data BLOB);
CREATE UNIQUE INDEX fe_current ON file_entries(path) WHERE is_current = 1;
CREATE INDEX fe_path_gen ON file_entries(path, generation);
CREATE TABLE write_results (path TEXT NOT NULL, write_id TEXT NOT NULL,
    result_json TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (path, write_id));
"""
_COLUMNS = ("path, generation, entry_kind, part_index, head_sha256, is_current, head_json,"
            " write_id, sha256, size_bytes, local_path, created_at, superseded_at, inline_data")


async def _open(root: Path, inline: int = INLINE, **kw: Any) -> LocalStore:
    store = LocalStore([root], total_slots=SLOTS, part_size=PART, io_threads=4,
                       inline_max_bytes=inline, **kw)
    await store.open()
    return store


def _result(head: Head) -> dict[str, Any]:
    return {"generation": head.generation, "etag": head.etag}


async def _write(store: LocalStore, slot: int, path: str, content: Any, *, write_id: str = "",
                 now: float = 1.0) -> WriteReport:
    return await store.write(slot, path, content, write_id=write_id, clock=lambda: now,
                             precondition=None, result_for=_result)


async def _read(store: LocalStore, slot: int, path: str) -> bytes | None:
    obj = await store.get_object(slot, path)
    if obj is None or obj.head.deleted:
        return None
    if obj.head.size_bytes == 0:
        return b""
    return b"".join([c async for c in store.read_object(obj, 0, obj.head.size_bytes - 1)])


def _query(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, args).fetchall())
    finally:
        db.close()


# -- the layout -----------------------------------------------------------------------


async def test_slots_share_group_databases_and_keep_their_rows_apart(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    for slot in range(SLOTS):  # four slots per group; the same path in each
        await _write(store, slot, "same", str(slot).encode())
        await _write(store, slot, f"big/{slot}", os.urandom(PART + 1))
    stats = store.slot_stats
    assert (stats.creations, stats.opens, stats.evictions) == (GROUPS, GROUPS, 0)
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()
                  if p.name.endswith(".sqlite3")) == [f"group-{g:02d}.sqlite3"
                                                      for g in range(GROUPS)]
    assert not list((tmp_path / "slots").glob("*/meta.sqlite3*"))
    for slot in (0, GROUPS, 2 * GROUPS + 5):
        assert await _read(store, slot, "same") == str(slot).encode()
        head = await store.current_head(slot, "same")
        assert head is not None and head.generation == 1 and head.slot_id == slot
    assert _query(group_file(tmp_path, 5), "SELECT DISTINCT slot_id FROM file_entries "
                  "ORDER BY slot_id") == [(5,), (GROUPS + 5,), (2 * GROUPS + 5,), (3 * GROUPS + 5,)]
    # overwrites and reads open nothing more
    for slot in range(SLOTS):
        await _write(store, slot, "same", b"again")
    assert store.slot_stats.opens == GROUPS
    page = await store.list_heads("big/", None, 10, include_deleted=False)
    assert [h.path for h in page] == sorted(f"big/{s}" for s in range(SLOTS))[:10]
    await store.close()


async def test_gc_and_recovery_work_per_slot_inside_a_group(tmp_path: Path) -> None:
    store = await _open(tmp_path, inline=0)
    for slot in (3, GROUPS + 3):
        await _write(store, slot, "g", b"one", now=1.0)
        await _write(store, slot, "g", b"two", now=2.0)
    assert await store.collect_garbage(cutoff=10.0) == 2
    for slot in (3, GROUPS + 3):
        assert not (tmp_path / f"slots/{slot}/blobs/g/g.1").exists()
        assert (tmp_path / f"slots/{slot}/blobs/g/g.2").is_dir()
        assert await _read(store, slot, "g") == b"two"
    await store.close()


async def test_a_slot_without_a_directory_is_found_in_its_group(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _write(store, 9, "inline", b"small")  # no part file: no slot directory
    assert not (tmp_path / "slots/9").exists()
    await store.close()
    store = await _open(tmp_path)
    assert await _read(store, 9, "inline") == b"small"
    assert [h.path for h in await store.list_heads("", None, 10, False)] == ["inline"]
    await store.close()


async def test_the_open_bound_still_holds_for_groups(tmp_path: Path) -> None:
    store = await _open(tmp_path, max_open_slots=4)
    for slot in range(8):
        await _write(store, slot, "k", b"v")
    assert store.slot_stats.open_now == 4 and store.slot_stats.evictions == 4
    for slot in range(8):
        assert await _read(store, slot, "k") == b"v"
    await store.close()


# -- migration from per-slot databases ---------------------------------------------------


async def _legacy_disk(tmp_path: Path) -> Path:
    """A disk in the previous layout: slots 1 and 65 (one group) with part files,
    inline objects, tombstones, write results and a pending write (with a stray
    file) in per-slot version-2 databases; slot 2's database is empty."""
    seed = await _open(tmp_path / "seed")
    for slot in (1, GROUPS + 1):
        await _write(seed, slot, "files", os.urandom(PART + 10), write_id="w-files")
        await _write(seed, slot, "inline", f"small {slot}".encode(), write_id="w-inline")
        await _write(seed, slot, "gone", b"x")
        await _write(seed, slot, "gone", TOMBSTONE)
    await seed.close()
    disk = tmp_path / "disk"
    for slot in (1, GROUPS + 1):
        rows = _query(group_file(tmp_path / "seed", slot),
                      f"SELECT {_COLUMNS} FROM file_entries WHERE slot_id = ? ORDER BY id", slot)
        results = _query(group_file(tmp_path / "seed", slot),
                         "SELECT path, write_id, result_json, created_at FROM write_results"
                         " WHERE slot_id = ?", slot)
        slot_dir = disk / "slots" / str(slot)
        slot_dir.mkdir(parents=True)
        os.rename(tmp_path / f"seed/slots/{slot}/blobs", slot_dir / "blobs")
        (slot_dir / "blobs/torn/g.1").mkdir(parents=True)
        (slot_dir / "blobs/torn/g.1/.tmp-half").write_bytes(b"half")
        db = sqlite3.connect(slot_dir / "meta.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(f"BEGIN; {_V2_SCHEMA} PRAGMA user_version=2; COMMIT;")
        marks = ",".join("?" * len(_COLUMNS.split(",")))
        db.executemany(f"INSERT INTO file_entries ({_COLUMNS}) VALUES ({marks})", rows)
        db.executemany("INSERT INTO write_results VALUES (?,?,?,?)", results)
        db.execute("INSERT INTO file_entries (path, generation, entry_kind, local_path,"
                   " created_at) VALUES ('torn', 1, 'pending', 'blobs/torn/g.1', 1.0)")
        db.close()
    (disk / "slots/2").mkdir()
    sqlite3.connect(disk / "slots/2/meta.sqlite3").close()  # an empty file
    return disk


async def _check_migrated(disk: Path, store: LocalStore) -> None:
    for slot in (1, GROUPS + 1):
        assert await _read(store, slot, "inline") == f"small {slot}".encode()
        assert await _read(store, slot, "files") is not None
        assert await _read(store, slot, "gone") is None
        replay = await _write(store, slot, "inline", b"other", write_id="w-inline")
        assert replay.outcome is CommitOutcome.REPLAY
        assert not (disk / f"slots/{slot}/blobs/torn").exists()
        assert not list((disk / f"slots/{slot}").glob("meta.sqlite3*"))
    assert not (disk / "slots/2/meta.sqlite3").exists()
    group = group_file(disk, 1)
    assert _query(group, "SELECT slot_id FROM migrated_slots ORDER BY slot_id") == [
        (1,), (GROUPS + 1,)]
    # every row once: no slot was copied twice
    assert _query(group, "SELECT slot_id, COUNT(*) FROM file_entries WHERE entry_kind = 'meta'"
                  " AND path = 'files' GROUP BY slot_id") == [(1, 1), (GROUPS + 1, 1)]
    assert _query(group, "SELECT COUNT(*) FROM file_entries WHERE entry_kind = 'pending'") == [
        (0,)]


async def test_per_slot_databases_are_migrated_at_start(tmp_path: Path) -> None:
    disk = await _legacy_disk(tmp_path)
    store = await _open(disk)
    assert store.migrated_slots == 3 and store.recovered_writes == 2
    await _check_migrated(disk, store)
    await _write(store, 1, "new", b"after")
    await store.close()
    again = await _open(disk)  # nothing left to migrate
    assert again.migrated_slots == 0 and again.recovered_writes == 0
    assert await _read(again, 1, "new") == b"after"
    await _check_migrated(disk, again)
    await again.close()


def _crash(monkeypatch: pytest.MonkeyPatch, target: Any, name: str,
           when: Callable[..., bool]) -> None:
    """Make `target.name` raise (as a dying process would stop) for slot 65:
    slot 1, in the same group, has been migrated by then."""
    real: Callable[..., Any] = getattr(target, name)

    def crashing(*args: Any) -> Any:
        if when(*args):
            raise KeyboardInterrupt("crash")
        return real(*args)

    monkeypatch.setattr(target, name, crashing)


async def test_crash_before_the_copy_commits_leaves_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = await _legacy_disk(tmp_path)
    # the copy transaction fails after its rows went in: as if the process died there
    _crash(monkeypatch, GroupMeta, "_mark_migrated",
           lambda _group, slot, _now: slot == GROUPS + 1)
    with pytest.raises(KeyboardInterrupt):
        await _open(disk)
    monkeypatch.undo()
    assert (disk / f"slots/{GROUPS + 1}/meta.sqlite3").exists()  # still authoritative
    assert _query(group_file(disk, 1), "SELECT COUNT(*) FROM file_entries WHERE slot_id = ?",
                  GROUPS + 1) == [(0,)]
    store = await _open(disk)
    await _check_migrated(disk, store)
    await store.close()


async def test_crash_after_the_copy_commits_removes_the_old_file_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = await _legacy_disk(tmp_path)
    _crash(monkeypatch, migrate, "remove_legacy",
           lambda slot_dir: slot_dir.name == str(GROUPS + 1))
    with pytest.raises(KeyboardInterrupt):
        await _open(disk)
    monkeypatch.undo()
    assert (disk / f"slots/{GROUPS + 1}/meta.sqlite3").exists()
    assert _query(group_file(disk, 1), "SELECT slot_id FROM migrated_slots ORDER BY slot_id"
                  ) == [(1,), (GROUPS + 1,)]
    store = await _open(disk)
    assert store.migrated_slots == 0  # slot 65's rows were already in: no copy
    await _check_migrated(disk, store)
    await store.close()


async def test_a_per_slot_database_of_an_unknown_version_is_refused(tmp_path: Path) -> None:
    from rimio.core.errors import StorageCorrupt

    (tmp_path / "slots/3").mkdir(parents=True)
    db = sqlite3.connect(tmp_path / "slots/3/meta.sqlite3")
    db.execute("PRAGMA user_version=7")
    db.close()
    with pytest.raises(StorageCorrupt, match="version 7"):
        await _open(tmp_path)
