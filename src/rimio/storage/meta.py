"""The metadata databases: one SQLite file per group of slots, `file_entries` inside.

The metadata of slot `s` lives in `<disk>/meta/group-<s % GROUPS:02>.sqlite3`
on the disk that holds the slot's directory, so a node has at most `GROUPS`
databases per disk and keeps them all open (rfcs/0010-slot-groups.md). Each
is in WAL mode with `synchronous=FULL`, so a head is durable once its
transaction commits. `file_entries` holds one row per logical file of a blob,
tagged with its `slot_id`: the head (`meta` or `tombstone`, inline JSON), one
row per part, and `pending` rows that mark a write in progress so start-up
can remove what an interrupted write left behind. A part row either names a
part file (`local_path`, relative to the slot's directory) or, for a small
object, holds the part's bytes itself (`inline_data`, with `local_path`
NULL), committed in the same transaction as its head. A part file's row says
how the file is stored (`compression`: NULL or 'zstd') and, when compressed,
its size on disk (`stored_bytes`; `size_bytes` is always the logical size).
`write_results` remembers the first answer to each `X-Rimio-Write-Id`.
`migrated_slots` records the slots whose old per-slot database was copied in
(storage/migrate.py).

`GroupMeta` is one database; `SlotMeta` is the view of one slot's rows in it,
with every query by path scoped to the slot. Schema version 4 is the first of
group databases (versions 1 to 3 were per-slot files, migrated at start);
version 5 adds the slotlet digests of anti-entropy (RFC 0014), computed from
the heads when a version-4 database is opened; version 6 adds `doomed_files`,
the journal of part files whose rows garbage collection deleted and which
are not unlinked yet (RFC 0016), and an index on the age of write results.

Methods block; the caller runs them in a worker thread and holds the group's `lock`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rimio.core.digest import EMPTY, SLOTLETS, HeadKey, SlotDigest, slotlet_of, token_of, xor
from rimio.core.errors import StorageCorrupt
from rimio.core.head import Head, beats
from rimio.core.writes import CommitOutcome, Precondition, WriteCheck
from rimio.storage.parts import PartRecord, fsync_dir

SCHEMA_VERSION = 6

# Slots per disk share this many databases: slot s goes to group s % GROUPS.
# Fixed for a node's disks: changing it would move rows between files.
GROUPS = 64
META_DIR = "meta"

# The digests of each slot's current heads (RFC 0014): one row per non-empty
# slotlet, and a row at slotlet SLOTLETS holding the slot's digest (the XOR of
# all), kept in the transaction of every change of a current head.
_SLOTLETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS slotlets (
    slot_id INTEGER NOT NULL,
    slotlet INTEGER NOT NULL,
    digest  BLOB    NOT NULL,
    PRIMARY KEY (slot_id, slotlet)
) WITHOUT ROWID;
"""

# Garbage collection (RFC 0016): the part files whose rows were deleted, written
# in the same transaction as the deletion, each removed once its file is
# unlinked; and the index the expiry of write results scans.
_GC_SCHEMA = """
CREATE TABLE IF NOT EXISTS doomed_files (
    id         INTEGER PRIMARY KEY,
    slot_id    INTEGER NOT NULL,
    path       TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    local_path TEXT    NOT NULL,
    file_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wr_created ON write_results(created_at);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    slot_id       INTEGER NOT NULL,
    path          TEXT    NOT NULL,
    generation    INTEGER NOT NULL,
    entry_kind    TEXT    NOT NULL CHECK (entry_kind IN ('meta', 'tombstone', 'part', 'pending')),
    part_index    INTEGER,
    head_sha256   TEXT,
    is_current    INTEGER NOT NULL DEFAULT 0,
    head_json     TEXT,
    write_id      TEXT,
    sha256        TEXT,
    size_bytes    INTEGER,
    local_path    TEXT,
    archive_url   TEXT,
    compression   TEXT,
    created_at    REAL    NOT NULL,
    superseded_at REAL,
    inline_data   BLOB,
    stored_bytes  INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS fe_current ON file_entries(path, slot_id)
    WHERE is_current = 1;
CREATE INDEX IF NOT EXISTS fe_path_gen ON file_entries(path, slot_id, generation);
CREATE INDEX IF NOT EXISTS fe_slot ON file_entries(slot_id, path);
CREATE INDEX IF NOT EXISTS fe_superseded ON file_entries(superseded_at)
    WHERE superseded_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS fe_pending ON file_entries(entry_kind) WHERE entry_kind = 'pending';
CREATE TABLE IF NOT EXISTS write_results (
    slot_id     INTEGER NOT NULL,
    path        TEXT NOT NULL,
    write_id    TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (path, slot_id, write_id)
);
CREATE INDEX IF NOT EXISTS wr_slot ON write_results(slot_id);
CREATE TABLE IF NOT EXISTS migrated_slots (
    slot_id     INTEGER PRIMARY KEY,
    migrated_at REAL NOT NULL
);
""" + _SLOTLETS_SCHEMA + _GC_SCHEMA

# The columns a per-slot database (schema version 3) shares with a group's.
LEGACY_ENTRY_COLUMNS = (
    "path, generation, entry_kind, part_index, head_sha256, is_current, head_json, write_id,"
    " sha256, size_bytes, local_path, archive_url, compression, created_at, superseded_at,"
    " inline_data, stored_bytes")


def group_of(slot: int) -> int:
    return slot % GROUPS


def group_file(disk: Path, slot: int) -> Path:
    """The database holding the metadata of `slot` when its directory is on `disk`."""
    return disk / META_DIR / f"group-{group_of(slot):02d}.sqlite3"


def slot_dirs(disk: Path) -> list[tuple[int, Path]]:
    """The slot directories under `<disk>/slots` (named by their slot number),
    by slot; none when there is no such directory."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(disk / "slots"):
            if entry.is_dir() and entry.name.isascii() and entry.name.isdigit():
                found.append((int(entry.name), Path(entry.path)))
    return sorted(found)

# Builds the head of a write once its generation is known, with the answer to
# record for its write id.
HeadBuilder = Callable[[int], tuple[Head, dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class PendingWrite:
    id: int
    path: str
    generation: int
    gen_dir: str


@dataclass(frozen=True, slots=True)
class DoomedFile:
    """A part file whose rows garbage collection deleted, not unlinked yet."""

    id: int
    slot: int
    path: str
    generation: int
    local_path: str  # relative to the slot's directory
    file_bytes: int


_template_lock = threading.Lock()
_template_bytes: bytes | None = None


def _template() -> bytes:
    """An empty group database (WAL mode, schema in place), built once per process.

    Creating a database statement by statement costs about nine fsyncs (the
    switch to WAL, the schema, the first checkpoint); copying this image into
    place costs two.
    """
    global _template_bytes
    with _template_lock:
        if _template_bytes is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "template.sqlite3"
                db = sqlite3.connect(path, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
                db.close()  # checkpoints: everything is in the main file now
                _template_bytes = path.read_bytes()
        return _template_bytes


def _install_template(db_path: Path) -> None:
    for stale in db_path.parent.glob(f".{db_path.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a process that died mid-copy
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(_template())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, db_path)
    fsync_dir(db_path.parent)


class GroupMeta:
    """One group database: the metadata of the slots `s` with `s % GROUPS` equal
    to its number, on one disk. Not thread-safe by itself: hold `lock`."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path
        self.lock = threading.Lock()
        self.created = not db_path.exists()
        if self.created:
            _install_template(db_path)
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        try:
            self._configure()
        except BaseException:
            self._db.close()
            raise

    def _configure(self) -> None:
        db = self._db
        # Per connection, and cheap: none of these touches the disk. The WAL
        # journal mode is stored in the file (the template has it), so it is
        # only set again below for a database that was not made from it.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        # A small page cache (128 KiB at most, filled only as pages are read)
        # and no memory map: the RSS of a node grows with its open databases.
        db.execute("PRAGMA cache_size=-128")
        db.execute("PRAGMA mmap_size=0")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StorageCorrupt(f"metadata database schema version {version} is newer than "
                                 f"this rimio's ({SCHEMA_VERSION})")
        if version in (4, 5):
            # Version 4 had no slotlet digests: add them, computed from the
            # heads; versions 4 and 5 had no GC journal. One transaction.
            db.execute("BEGIN IMMEDIATE")
            try:
                if version == 4:
                    db.execute(_SLOTLETS_SCHEMA)  # (executescript would commit first)
                    for (slot,) in db.execute(
                            "SELECT DISTINCT slot_id FROM file_entries WHERE is_current = 1"
                    ).fetchall():
                        SlotMeta(db, int(slot)).rebuild_digests()
                for statement in _GC_SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return
        if version != 0:
            # Versions 1 to 3 were per-slot files, never group databases.
            raise StorageCorrupt(f"{self.path} has schema version {version}, not that of a "
                                 "group database")
        # Not made from the template (an empty file): the whole schema, in one
        # transaction (one fsync; a crash leaves the file empty).
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")

    def close(self) -> None:
        self._db.close()

    def slot(self, slot: int) -> SlotMeta:
        """The view of `slot`'s rows (hold `lock` while using it)."""
        return SlotMeta(self._db, slot)

    def slots(self) -> list[int]:
        """The slots with rows here: a skip-scan of `fe_slot`, one seek per slot."""
        rows = self._db.execute(
            "WITH RECURSIVE s(x) AS (SELECT MIN(slot_id) FROM file_entries UNION ALL "
            "SELECT (SELECT MIN(slot_id) FROM file_entries WHERE slot_id > x) FROM s "
            "WHERE x IS NOT NULL) SELECT x FROM s WHERE x IS NOT NULL"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def pending(self) -> list[tuple[int, PendingWrite]]:
        """(slot, marker) of every write in progress, in any slot of the group."""
        rows = self._db.execute(
            "SELECT slot_id, id, path, generation, local_path FROM file_entries "
            "WHERE entry_kind = 'pending'"
        ).fetchall()
        return [(int(r[0]), PendingWrite(int(r[1]), r[2], int(r[3]), r[4])) for r in rows]

    def list_current(
        self, prefix: str, after: str | None, limit: int, include_deleted: bool
    ) -> list[Head]:
        """The first `limit` current heads of the group's slots, by path."""
        return _list_current(self._db, None, prefix, after, limit, include_deleted)

    def superseded_before(self, cutoff: float, limit: int) -> list[tuple[int, str, int, str]]:
        """(slot, path, generation, head_sha256) of heads superseded before `cutoff`."""
        rows = self._db.execute(
            "SELECT slot_id, path, generation, head_sha256 FROM file_entries "
            "WHERE superseded_at IS NOT NULL AND superseded_at < ? AND is_current = 0 "
            "AND entry_kind IN ('meta', 'tombstone') LIMIT ?",
            (cutoff, limit),
        ).fetchall()
        return [(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    # -- garbage collection (RFC 0016) ------------------------------------------

    def watermark(self) -> int:
        """The largest row id of `file_entries` so far: every row inserted
        later has a larger one (AUTOINCREMENT never reuses an id)."""
        row = self._db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'file_entries'").fetchone()
        return 0 if row is None else int(row[0])

    def superseded_settled(self, cutoff: float, watermark: int,
                           limit: int) -> list[tuple[int, str, int, str]]:
        """(slot, path, generation, head_sha256) of heads superseded before
        the wall time `cutoff` whose superseding head has a row id at most
        `watermark` (it was inserted by then), oldest first.

        A head is superseded in the transaction that inserts the next head
        of its path, so that row's id dates the supersession on the row-id
        clock. When the next head row is gone (collected itself), a later
        one stands in: its id is larger, so the test only errs late. With
        no later head row at all (the current tombstone was purged), the
        head's own id stands in."""
        rows = self._db.execute(
            "SELECT x.slot_id, x.path, x.generation, x.head_sha256 FROM file_entries x "
            "WHERE x.superseded_at IS NOT NULL AND x.superseded_at < ? AND x.is_current = 0 "
            "AND x.entry_kind IN ('meta', 'tombstone') "
            "AND COALESCE((SELECT MIN(n.id) FROM file_entries n WHERE n.path = x.path "
            "  AND n.slot_id = x.slot_id AND n.id > x.id "
            "  AND n.entry_kind IN ('meta', 'tombstone')), x.id) <= ? "
            "ORDER BY x.superseded_at LIMIT ?",
            (cutoff, watermark, limit),
        ).fetchall()
        return [(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    def doomed(self, limit: int) -> list[DoomedFile]:
        """Journaled files not unlinked yet, oldest first."""
        rows = self._db.execute(
            "SELECT id, slot_id, path, generation, local_path, file_bytes FROM doomed_files "
            "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [DoomedFile(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], int(r[5]))
                for r in rows]

    def clear_doomed(self, ids: Sequence[int]) -> None:
        """Forget journal entries whose files are gone (or named again): one
        transaction. Not synced: an entry a power loss brings back only
        unlinks a missing file again."""
        db = self._db
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM doomed_files WHERE id = ?", [(i,) for i in ids])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def doom_heads(self, heads: Sequence[tuple[int, str, int, str]]) -> None:
        """`SlotMeta.doom_head` for each (slot, path, generation, head_sha256)
        of `heads`, in one transaction (one sync for the batch)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for slot, path, generation, sha in heads:
                SlotMeta(db, slot).doom_in_transaction(path, generation, sha)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def expire_write_results(self, cutoff: float, limit: int) -> int:
        """Delete up to `limit` write results recorded before the wall time `cutoff`."""
        return self._db.execute(
            "DELETE FROM write_results WHERE rowid IN (SELECT rowid FROM write_results "
            "WHERE created_at < ? LIMIT ?)", (cutoff, limit)).rowcount

    def slot_tops(self) -> dict[int, bytes]:
        """The digest of every slot of the group that has heads (RFC 0014)."""
        rows = self._db.execute("SELECT slot_id, digest FROM slotlets WHERE slotlet = ?",
                                (SLOTLETS,)).fetchall()
        return {int(r[0]): bytes(r[1]) for r in rows}

    # -- migration of a per-slot database ---------------------------------------

    def is_migrated(self, slot: int) -> bool:
        return self._db.execute(
            "SELECT 1 FROM migrated_slots WHERE slot_id = ?", (slot,)).fetchone() is not None

    def adopt_slot_database(self, slot: int, legacy: Path | None, now: float) -> int:
        """Copy every row of a version-2 per-slot database (None: an empty one)
        into this group as `slot`'s, and record the slot as migrated: one
        transaction, so a crash leaves either nothing of it here or all of it.
        Returns the number of `file_entries` rows copied."""
        db = self._db
        if legacy is not None:
            db.execute("ATTACH DATABASE ? AS legacy", (str(legacy),))
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                copied = 0
                if legacy is not None:
                    # In id order: pending markers and heads keep their relative order.
                    copied = db.execute(
                        f"INSERT INTO file_entries (slot_id, {LEGACY_ENTRY_COLUMNS}) "
                        f"SELECT ?, {LEGACY_ENTRY_COLUMNS} FROM legacy.file_entries ORDER BY id",
                        (slot,),
                    ).rowcount
                    db.execute(
                        "INSERT INTO write_results (slot_id, path, write_id, result_json,"
                        " created_at) SELECT ?, path, write_id, result_json, created_at"
                        " FROM legacy.write_results",
                        (slot,),
                    )
                SlotMeta(db, slot).rebuild_digests()
                self._mark_migrated(slot, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            if legacy is not None:
                db.execute("DETACH DATABASE legacy")
        return copied

    def _mark_migrated(self, slot: int, now: float) -> None:
        self._db.execute("INSERT INTO migrated_slots (slot_id, migrated_at) VALUES (?, ?)",
                         (slot, now))


class SlotMeta:
    """The rows of one slot in its group database. Holds no state of its own:
    the caller holds the group's lock while using it."""

    def __init__(self, db: sqlite3.Connection, slot: int) -> None:
        self._db = db
        self.slot_id = slot

    # -- heads ----------------------------------------------------------------

    def current_head(self, path: str) -> Head | None:
        row = self._db.execute(
            "SELECT head_json FROM file_entries WHERE path = ? AND slot_id = ? AND is_current = 1",
            (path, self.slot_id),
        ).fetchone()
        return None if row is None else Head.from_dict(json.loads(row[0]))

    def parts_of(self, head: Head, *, with_data: bool = False) -> list[PartRecord]:
        """The part rows of `head`; inline parts carry their bytes when `with_data`."""
        data = "inline_data" if with_data else "NULL"
        rows = self._db.execute(
            f"SELECT part_index, sha256, size_bytes, local_path, {data}, compression, stored_bytes"
            " FROM file_entries "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND entry_kind = 'part' "
            "AND head_sha256 = ? ORDER BY part_index",
            (head.path, self.slot_id, head.generation, head.sha256),
        ).fetchall()
        return [PartRecord(int(r[0]), r[1], int(r[2]), r[3],
                           None if r[4] is None else bytes(r[4]), r[5],
                           None if r[6] is None else int(r[6])) for r in rows]

    def inline_range(self, head: Head, index: int, offset: int, length: int) -> bytes | None:
        """`length` bytes at `offset` of inline part `index` of `head` (None: no such row)."""
        row = self._db.execute(
            "SELECT substr(inline_data, ?, ?) FROM file_entries "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND entry_kind = 'part' "
            "AND head_sha256 = ? AND part_index = ? AND local_path IS NULL",
            (offset + 1, length, head.path, self.slot_id, head.generation, head.sha256, index),
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def set_inline(self, path: str, generation: int, head_sha256: str, index: int,
                   sha256: str, data: bytes | None) -> None:
        """Replace the bytes of inline part `index` of the head of `path` at
        `generation` whose hash is `head_sha256` (the part's hash is
        `sha256`): None marks a part that failed its check missing; bytes
        restore it (a repair that brought the same head again)."""
        self._db.execute(
            "UPDATE file_entries SET inline_data = ? "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND entry_kind = 'part' "
            "AND head_sha256 = ? AND part_index = ? AND sha256 = ? AND local_path IS NULL",
            (data, path, self.slot_id, generation, head_sha256, index, sha256),
        )

    def set_part_storage(self, path: str, generation: int, local_path: str,
                         compression: str | None, stored_bytes: int | None) -> None:
        """Say how the part file `local_path` of `path` at `generation` is now
        stored, in every row that names it (a file restored in place, RFC 0017;
        heads of one generation with the same content share a file)."""
        self._db.execute(
            "UPDATE file_entries SET compression = ?, stored_bytes = ? "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND entry_kind = 'part' "
            "AND local_path = ?",
            (compression, stored_bytes, path, self.slot_id, generation, local_path),
        )

    def write_result(self, path: str, write_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT result_json FROM write_results WHERE path = ? AND slot_id = ? AND write_id = ?",
            (path, self.slot_id, write_id),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def check_write(self, path: str, write_id: str) -> WriteCheck:
        """What a write of `path` finds: the current head and, when the write
        has an id, the answer already recorded for it."""
        first = self.write_result(path, write_id) if write_id else None
        return WriteCheck(self.current_head(path), first)

    def max_generation(self, path: str) -> int:
        row = self._db.execute(
            "SELECT MAX(generation) FROM file_entries WHERE path = ? AND slot_id = ?",
            (path, self.slot_id),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- writes ---------------------------------------------------------------

    def begin_pending(self, path: str, blob_dir: str, now: float,
                      generation: int | None = None) -> PendingWrite:
        """Mark a write of `path` in progress, reserving its generation.

        Without `generation` the next one of `path` is taken; the pending row
        itself counts in `max_generation`, so two writes that start one after
        the other never get the same generation. A given `generation` (chosen
        elsewhere, as a replica applying a coordinator's write would) is used
        as it is.
        """
        if generation is None:
            generation = self.max_generation(path) + 1
        gen_dir = f"{blob_dir}/g.{generation}"
        # The marker need not survive power loss, only a process crash (the
        # WAL is in the OS's page cache by then): without fsync here a write
        # costs one fsync less. A marker lost with the power leaves at worst
        # unreferenced part files, never a visible torn object.
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            cur = self._db.execute(
                "INSERT INTO file_entries (slot_id, path, generation, entry_kind, local_path,"
                " created_at) VALUES (?, ?, ?, 'pending', ?, ?)",
                (self.slot_id, path, generation, gen_dir, now),
            )
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        return PendingWrite(int(cur.lastrowid or 0), path, generation, gen_dir)

    def drop_pending(self, pending_id: int) -> None:
        self._db.execute(
            "DELETE FROM file_entries WHERE id = ? AND slot_id = ? AND entry_kind = 'pending'",
            (pending_id, self.slot_id),
        )

    def referenced_files(self, path: str, generation: int) -> set[str]:
        rows = self._db.execute(
            "SELECT local_path FROM file_entries "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND entry_kind = 'part' "
            "AND local_path IS NOT NULL AND head_sha256 IS NOT NULL",
            (path, self.slot_id, generation),
        ).fetchall()
        return {r[0] for r in rows}

    def commit(
        self,
        head: Head,
        parts: Sequence[PartRecord],
        *,
        now: float,
        pending_id: int | None = None,
        precondition: Precondition | None = None,
        result: dict[str, Any] | None = None,
    ) -> tuple[CommitOutcome, WriteCheck]:
        """Apply `head` atomically if it beats the current one.

        Returns the outcome and what the checks found (the current head before
        this commit; for a replay, the first result recorded for the write
        id). The replay and precondition checks are the ones a write runs
        before it starts, repeated here because the head may have changed
        meanwhile. The pending marker is dropped in the same transaction.
        """
        outcome, check, _ = self.commit_new(
            head.path, head.write_id, lambda generation: (head, result), parts, now=now,
            generation=head.generation, pending_id=pending_id, precondition=precondition)
        return outcome, check

    def commit_new(
        self,
        path: str,
        write_id: str,
        build: HeadBuilder,
        parts: Sequence[PartRecord],
        *,
        now: float,
        generation: int | None = None,
        pending_id: int | None = None,
        precondition: Precondition | None = None,
    ) -> tuple[CommitOutcome, WriteCheck, dict[str, Any] | None]:
        """Check, choose the generation, build the head and apply it: one transaction.

        A write without files (an inline object, a tombstone) needs no pending
        marker: this is its whole write, one WAL commit. `generation` None
        takes the next one of `path` (pending rows of writes in flight count).
        Returns the outcome, what the checks found, and the answer built with
        the head (None when refused).
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Outcomes other than APPLIED leave the pending marker in place: the
            # caller removes the files first and the marker after, so a crash in
            # between still gets cleaned up at start-up.
            check = self.check_write(path, write_id)
            refusal = check.refusal(precondition)
            if refusal is not None:
                db.execute("COMMIT")  # nothing written: no sync
                return refusal, check, None
            if generation is None:
                generation = self.max_generation(path) + 1
            head, result = build(generation)
            current = check.current
            if not beats(head, current):
                # The write happened but a better head already won; remember the
                # answer so a replay of the write id does not write again.
                self._record_result(head, result, now)
                db.execute("COMMIT")
                return CommitOutcome.SUPERSEDED, check, result
            if pending_id is not None:
                db.execute("DELETE FROM file_entries WHERE id = ?", (pending_id,))
            self._install(head, parts, current, now)
            self._record_result(head, result, now)
            db.execute("COMMIT")
            return CommitOutcome.APPLIED, check, result
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _install(self, head: Head, parts: Sequence[PartRecord], current: Head | None,
                 now: float) -> None:
        """Make `head` (with its part rows) the current head of its path: the
        step every commit shares, inside the caller's transaction."""
        db = self._db
        if current is not None:
            db.execute(
                "UPDATE file_entries SET is_current = 0, superseded_at = ? "
                "WHERE path = ? AND slot_id = ? AND is_current = 1",
                (now, head.path, self.slot_id),
            )
        db.execute(
            "INSERT INTO file_entries (slot_id, path, generation, entry_kind, head_sha256,"
            " is_current, head_json, write_id, size_bytes, created_at)"
            " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
            (self.slot_id, head.path, head.generation, head.kind, head.sha256,
             json.dumps(head.to_dict(), sort_keys=True), head.write_id or None,
             head.size_bytes, now),
        )
        db.executemany(
            "INSERT INTO file_entries (slot_id, path, generation, entry_kind, part_index,"
            " head_sha256, sha256, size_bytes, local_path, inline_data, compression,"
            " stored_bytes, created_at) VALUES (?, ?, ?, 'part', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(self.slot_id, head.path, head.generation, p.index, head.sha256, p.sha256,
              p.size_bytes, p.local_path, p.data if p.inline else None, p.compression,
              p.stored_bytes, now) for p in parts],
        )
        self._update_digests(head.path, current.sha256 if current is not None else None,
                             head.sha256)

    # -- digests (RFC 0014) ----------------------------------------------------

    def _update_digests(self, path: str, old_sha: str | None, new_sha: str | None) -> None:
        """XOR the token of the replaced head (hash `old_sha`) out of its
        slotlet's digest and the slot's, and the new head's in (inside the
        caller's transaction); `new_sha` None: the path's head is forgotten
        (a purge, RFC 0015)."""
        change = token_of(path, new_sha) if new_sha is not None else EMPTY
        if old_sha is not None:
            change = xor(change, token_of(path, old_sha))
        if change == EMPTY:
            return
        for slotlet in (slotlet_of(path), SLOTLETS):
            row = self._db.execute(
                "SELECT digest FROM slotlets WHERE slot_id = ? AND slotlet = ?",
                (self.slot_id, slotlet)).fetchone()
            value = xor(bytes(row[0]), change) if row is not None else change
            if value == EMPTY:
                self._db.execute("DELETE FROM slotlets WHERE slot_id = ? AND slotlet = ?",
                                 (self.slot_id, slotlet))
            else:
                self._db.execute("INSERT OR REPLACE INTO slotlets (slot_id, slotlet, digest) "
                                 "VALUES (?, ?, ?)", (self.slot_id, slotlet, value))

    def rebuild_digests(self) -> None:
        """Recompute this slot's digests from its current heads (a migration;
        inside the caller's transaction)."""
        rows = self._db.execute(
            "SELECT path, head_sha256 FROM file_entries WHERE slot_id = ? AND is_current = 1",
            (self.slot_id,)).fetchall()
        digest = SlotDigest.of_heads((r[0], r[1]) for r in rows)
        self._db.execute("DELETE FROM slotlets WHERE slot_id = ?", (self.slot_id,))
        values = [(self.slot_id, i, d) for i, d in enumerate(digest.slotlets) if d != EMPTY]
        if values:
            values.append((self.slot_id, SLOTLETS, digest.top()))
        self._db.executemany("INSERT INTO slotlets (slot_id, slotlet, digest) VALUES (?, ?, ?)",
                             values)

    def digest(self) -> SlotDigest:
        """This slot's digest, as kept."""
        rows = self._db.execute(
            "SELECT slotlet, digest FROM slotlets WHERE slot_id = ? AND slotlet < ?",
            (self.slot_id, SLOTLETS)).fetchall()
        return SlotDigest.from_sparse({int(r[0]): bytes(r[1]) for r in rows})

    def heads_in(self, slotlets: Iterable[int]) -> dict[str, HeadKey]:
        """The head order key of each current head in `slotlets`, by path."""
        wanted = set(slotlets)
        rows = self._db.execute(
            "SELECT path, generation, entry_kind, head_sha256 FROM file_entries "
            "WHERE slot_id = ? AND is_current = 1", (self.slot_id,)).fetchall()
        return {r[0]: HeadKey(int(r[1]), r[2] == "tombstone", r[3]) for r in rows
                if slotlet_of(r[0]) in wanted}

    def _record_result(self, head: Head, result: dict[str, Any] | None, now: float, *,
                       once: bool = False) -> None:
        """Remember `result` for the head's write id; `once`: unless one is
        recorded already (a replica's apply: the first answer stays)."""
        if head.write_id and result is not None:
            verb = "INSERT OR IGNORE" if once else "INSERT"
            self._db.execute(
                f"{verb} INTO write_results (slot_id, path, write_id, result_json, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.slot_id, head.path, head.write_id, json.dumps(result), now),
            )

    # -- a replica's writes (RFC 0011 §5) ---------------------------------------
    #
    # A replica receives the parts of a write of a generation chosen by its
    # coordinator one request at a time, then the head. Each uploaded part is
    # a `part` row with `head_sha256` NULL (an "upload"): it says how its file
    # is stored until a head names it. All uploads of one (path, generation)
    # share one pending marker, so start-up recovery and an abort remove
    # their files like those of any interrupted write.

    def join_pending(self, path: str, blob_dir: str, now: float,
                     generation: int) -> PendingWrite:
        """The pending marker of the write of `path` at `generation`, made if
        there is none yet (parts of one write arrive one request at a time)."""
        row = self._db.execute(
            "SELECT id, local_path FROM file_entries WHERE path = ? AND slot_id = ? "
            "AND generation = ? AND entry_kind = 'pending' ORDER BY id LIMIT 1",
            (path, self.slot_id, generation),
        ).fetchone()
        if row is not None:
            return PendingWrite(int(row[0]), path, generation, row[1])
        return self.begin_pending(path, blob_dir, now, generation)

    def record_upload(self, path: str, generation: int, part: PartRecord, now: float) -> bool:
        """Record an uploaded part of the pending write of `path` at
        `generation`. False (nothing recorded) when that write has no pending
        marker any more: it was aborted while the part was written."""
        db = self._db
        # Like the marker, an upload need only survive a process crash: one
        # lost with the power is uploaded again (its file is reused).
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            return self._record_upload(path, generation, part, now)
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def _record_upload(self, path: str, generation: int, part: PartRecord, now: float) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_pending(path, generation):
                db.execute("COMMIT")
                return False
            db.execute(
                "DELETE FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
                "AND entry_kind = 'part' AND head_sha256 IS NULL AND part_index = ? "
                "AND sha256 = ?", (path, self.slot_id, generation, part.index, part.sha256))
            db.execute(
                "INSERT INTO file_entries (slot_id, path, generation, entry_kind, part_index,"
                " sha256, size_bytes, local_path, compression, stored_bytes, created_at)"
                " VALUES (?, ?, ?, 'part', ?, ?, ?, ?, ?, ?, ?)",
                (self.slot_id, path, generation, part.index, part.sha256, part.size_bytes,
                 part.local_path, part.compression, part.stored_bytes, now))
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _has_pending(self, path: str, generation: int) -> bool:
        return self._db.execute(
            "SELECT 1 FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
            "AND entry_kind = 'pending' LIMIT 1", (path, self.slot_id, generation),
        ).fetchone() is not None

    def part_file(self, path: str, generation: int, index: int,
                  sha256: str) -> PartRecord | None:
        """A part file of `path` at `generation` holding part `index` with hash
        `sha256`: an upload's, or one a head of that generation names."""
        row = self._db.execute(
            "SELECT size_bytes, local_path, compression, stored_bytes FROM file_entries "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND entry_kind = 'part' "
            "AND part_index = ? AND sha256 = ? AND local_path IS NOT NULL LIMIT 1",
            (path, self.slot_id, generation, index, sha256),
        ).fetchone()
        if row is None:
            return None
        return PartRecord(index, sha256, int(row[0]), row[1], None, row[2],
                          None if row[3] is None else int(row[3]))

    def upload_files(self, path: str, generation: int,
                     parts: Sequence[tuple[int, str]]) -> list[str]:
        """The files of the uploads of (index, sha256) `parts` that no head names."""
        named = self.referenced_files(path, generation)
        files = []
        for index, sha in parts:
            record = self.part_file(path, generation, index, sha)
            if record is not None and record.local_path not in named:
                files.append(record.local_path)
        return sorted({f for f in files if f is not None})

    def settle_uploads(self, head: Head, parts: Sequence[tuple[int, str]],
                       install: Sequence[PartRecord] | None, result: dict[str, Any] | None,
                       now: float, *, busy: bool) -> None:
        """One transaction: record `result` for the head's write id unless one
        is, make `head` current with `install` as its parts (None: leave the
        head as it is), forget the uploads of `parts`, and drop the pending
        marker of the head's generation once no upload of it is left and none
        is in flight (`busy`)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if install is not None:
                self._install(head, install, self.current_head(head.path), now)
            db.executemany(
                "DELETE FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
                "AND entry_kind = 'part' AND head_sha256 IS NULL AND part_index = ? "
                "AND sha256 = ?",
                [(head.path, self.slot_id, head.generation, i, sha) for i, sha in parts])
            if not busy and not self._has_uploads(head.path, head.generation):
                db.execute(
                    "DELETE FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
                    "AND entry_kind = 'pending'", (head.path, self.slot_id, head.generation))
            self._record_result(head, result, now, once=True)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _has_uploads(self, path: str, generation: int) -> bool:
        return self._db.execute(
            "SELECT 1 FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
            "AND entry_kind = 'part' AND head_sha256 IS NULL LIMIT 1",
            (path, self.slot_id, generation),
        ).fetchone() is not None

    def pending_of(self, path: str, generation: int) -> list[PendingWrite]:
        rows = self._db.execute(
            "SELECT id, local_path FROM file_entries WHERE path = ? AND slot_id = ? "
            "AND generation = ? AND entry_kind = 'pending'", (path, self.slot_id, generation),
        ).fetchall()
        return [PendingWrite(int(r[0]), path, generation, r[1]) for r in rows]

    def drop_uploads(self, path: str, generation: int) -> None:
        """Forget every upload of `path` at `generation` (their files are gone)."""
        self._db.execute(
            "DELETE FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
            "AND entry_kind = 'part' AND head_sha256 IS NULL", (path, self.slot_id, generation))

    def part_of(self, path: str, generation: int, head_sha256: str,
                index: int) -> PartRecord | None:
        """Part `index` of the stored head of `path` at `generation` whose hash
        is `head_sha256` (an inline part with its bytes)."""
        row = self._db.execute(
            "SELECT sha256, size_bytes, local_path, inline_data, compression, stored_bytes"
            " FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
            "AND entry_kind = 'part' AND head_sha256 = ? AND part_index = ?",
            (path, self.slot_id, generation, head_sha256, index),
        ).fetchone()
        if row is None:
            return None
        return PartRecord(index, row[0], int(row[1]), row[2],
                          None if row[3] is None else bytes(row[3]), row[4],
                          None if row[5] is None else int(row[5]))

    def has_rows(self) -> bool:
        """Whether any `file_entries` row belongs to this slot."""
        return self._db.execute("SELECT 1 FROM file_entries WHERE slot_id = ? LIMIT 1",
                                (self.slot_id,)).fetchone() is not None

    def forget_slot(self) -> None:
        """Delete every row of this slot (heads, parts, markers, write results):
        one transaction, so the slot is either whole here or gone."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM file_entries WHERE slot_id = ?", (self.slot_id,))
            db.execute("DELETE FROM write_results WHERE slot_id = ?", (self.slot_id,))
            db.execute("DELETE FROM slotlets WHERE slot_id = ?", (self.slot_id,))
            # (the caller removes the slot's whole tree: journaled files too)
            db.execute("DELETE FROM doomed_files WHERE slot_id = ?", (self.slot_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- listing --------------------------------------------------------------

    def list_current(
        self, prefix: str, after: str | None, limit: int, include_deleted: bool
    ) -> list[Head]:
        """The first `limit` current heads of this slot, by path."""
        return _list_current(self._db, self.slot_id, prefix, after, limit, include_deleted)

    # -- tombstones (RFC 0015) --------------------------------------------------

    def old_tombstones(self, before: float, limit: int) -> dict[str, HeadKey]:
        """Current tombstones installed here before `before` (wall seconds), by path."""
        rows = self._db.execute(
            "SELECT path, generation, head_sha256 FROM file_entries WHERE slot_id = ? "
            "AND is_current = 1 AND entry_kind = 'tombstone' AND created_at < ? "
            "ORDER BY path LIMIT ?", (self.slot_id, before, limit)).fetchall()
        return {r[0]: HeadKey(int(r[1]), True, r[2]) for r in rows}

    def _current_key(self, path: str) -> tuple[HeadKey, float] | None:
        """The head order key of the current head of `path`, and when it was
        installed here (wall seconds)."""
        row = self._db.execute(
            "SELECT generation, entry_kind, head_sha256, created_at FROM file_entries "
            "WHERE path = ? AND slot_id = ? AND is_current = 1", (path, self.slot_id)).fetchone()
        if row is None:
            return None
        return HeadKey(int(row[0]), row[1] == "tombstone", row[2]), float(row[3])

    def held(self, keys: Mapping[str, HeadKey]) -> set[str]:
        """The paths of `keys` whose current head here is exactly that head."""
        return {path for path, key in keys.items()
                if (current := self._current_key(path)) is not None and current[0] == key}

    def forget_current(self, keys: Mapping[str, HeadKey], *, tombstones_only: bool,
                       installed_before: float | None = None) -> set[str]:
        """Forget the current head of each path of `keys` that is exactly that
        head (a tombstone, with `tombstones_only`; installed here before
        `installed_before`, when given), with its part rows, in one
        transaction: its files are journaled like a collected head's
        (`doom_in_transaction`, rfcs/0016), and its token leaves the digests.
        The paths forgotten."""
        db = self._db
        forgotten: set[str] = set()
        db.execute("BEGIN IMMEDIATE")
        try:
            for path, key in keys.items():
                if tombstones_only and not key.deleted:
                    continue
                current = self._current_key(path)
                if current is None or current[0] != key:
                    continue
                if installed_before is not None and current[1] >= installed_before:
                    continue
                # no longer current, so that its rows go like a collected head's
                db.execute("UPDATE file_entries SET is_current = 0 "
                           "WHERE path = ? AND slot_id = ? AND is_current = 1",
                           (path, self.slot_id))
                self.doom_in_transaction(path, key.generation, key.sha256)
                self._update_digests(path, key.sha256, None)
                forgotten.add(path)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return forgotten

    # -- garbage --------------------------------------------------------------

    def doom_head(self, path: str, generation: int, head_sha: str) -> int:
        """Delete a superseded head and its part rows and, in the same
        transaction, journal its part files no other row names (none for an
        inline object: its bytes go with its rows). The files are unlinked
        after the commit (`GroupMeta.doomed`): a crash in between leaves
        them journaled, never unnamed. Returns the files journaled."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            doomed = self.doom_in_transaction(path, generation, head_sha)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return doomed

    def doom_in_transaction(self, path: str, generation: int, head_sha: str) -> int:
        """`doom_head` inside the caller's transaction (`GroupMeta.doom_heads`)."""
        db = self._db
        files = db.execute(
            "SELECT local_path, COALESCE(stored_bytes, size_bytes) FROM file_entries "
            "WHERE path = ? AND slot_id = ? AND generation = ? AND head_sha256 = ? "
            "AND entry_kind = 'part' AND local_path IS NOT NULL AND is_current = 0",
            (path, self.slot_id, generation, head_sha),
        ).fetchall()
        db.execute(
            "DELETE FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
            "AND head_sha256 = ? AND is_current = 0",
            (path, self.slot_id, generation, head_sha),
        )
        # A file another row still names (a head of the same generation that
        # reused it, an upload) stays.
        doomed = [(self.slot_id, path, generation, f, int(n)) for f, n in files
                  if not self.file_in_use(path, generation, f)]
        db.executemany(
            "INSERT INTO doomed_files (slot_id, path, generation, local_path, file_bytes) "
            "VALUES (?, ?, ?, ?, ?)", doomed)
        return len(doomed)

    def file_in_use(self, path: str, generation: int, local_path: str) -> bool:
        """Whether a row names the part file `local_path` of `path` at
        `generation`, or a write of that generation is in progress (its
        pending marker: it may reuse a file already there)."""
        return self._db.execute(
            "SELECT 1 FROM file_entries WHERE path = ? AND slot_id = ? AND generation = ? "
            "AND (entry_kind = 'pending' OR (entry_kind = 'part' AND local_path = ?)) LIMIT 1",
            (path, self.slot_id, generation, local_path),
        ).fetchone() is not None

    def named_files(self) -> set[str]:
        """Every name under the slot's directory a row of this slot holds:
        part files (of heads and uploads), the generation directories of
        writes in progress, and journaled files."""
        rows = self._db.execute(
            "SELECT local_path FROM file_entries WHERE slot_id = ? AND local_path IS NOT NULL "
            "UNION SELECT local_path FROM doomed_files WHERE slot_id = ?",
            (self.slot_id, self.slot_id)).fetchall()
        return {r[0] for r in rows}


def _list_current(db: sqlite3.Connection, slot: int | None, prefix: str, after: str | None,
                  limit: int, include_deleted: bool) -> list[Head]:
    clauses = ["is_current = 1"]
    args: list[Any] = []
    if slot is not None:
        clauses.append("slot_id = ?")
        args.append(slot)
    if prefix:
        clauses.append("path >= ?")
        args.append(prefix)
        upper = _prefix_upper_bound(prefix)
        if upper is not None:
            clauses.append("path < ?")
            args.append(upper)
    if after is not None:
        clauses.append("path > ?")
        args.append(after)
    if not include_deleted:
        clauses.append("entry_kind = 'meta'")
    args.append(limit)
    rows = db.execute(
        f"SELECT head_json FROM file_entries WHERE {' AND '.join(clauses)} "
        "ORDER BY path LIMIT ?",
        args,
    ).fetchall()
    return [Head.from_dict(json.loads(r[0])) for r in rows]


def _prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string that starts with `prefix`."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            chars[-1] = chr(nxt)
            return "".join(chars)
        chars.pop()
    return None
