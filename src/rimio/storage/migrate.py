"""Start-up migration of per-slot metadata databases into group databases.

Before slot groups (rfcs/0010-slot-groups.md) each slot kept its own
`slots/<s>/meta.sqlite3` (schema version 3; version 1 lacked `inline_data`,
version 2 `stored_bytes`).
At start, each such file still present is folded into the group database of
its disk: an older file is first brought to version 3 (ALTER TABLEs, in
one transaction, as the per-slot code did), then all its rows, pending
markers included (start-up recovery removes those afterwards), are copied in
one transaction that also records the slot in `migrated_slots`. Only then
are the old file and its `-wal`/`-shm` removed.

A crash before that transaction commits leaves the old file authoritative
(the group holds nothing of the slot, and the next start copies again); a
crash after it leaves the slot recorded as migrated, so the next start only
removes the old file. Part files do not move: they stay in the slot's
directory, where the copied rows name them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from rimio.core.errors import StorageCorrupt
from rimio.storage.meta import GroupMeta
from rimio.storage.parts import fsync_dir

LEGACY_DB = "meta.sqlite3"
LEGACY_VERSION = 3
# From each older per-slot schema version: the statements that bring it to the next.
_LEGACY_MIGRATIONS = {
    1: "ALTER TABLE file_entries ADD COLUMN inline_data BLOB;",
    2: "ALTER TABLE file_entries ADD COLUMN stored_bytes INTEGER;",
}
_SUFFIXES = ("", "-wal", "-shm")


def has_legacy(slot_dir: Path) -> bool:
    """Whether `slot_dir` holds a per-slot database, or what removing one left."""
    return any((slot_dir / f"{LEGACY_DB}{suffix}").exists() for suffix in _SUFFIXES)


def migrate_slot(group: GroupMeta, slot: int, slot_dir: Path, now: float) -> bool:
    """Fold `slot_dir`'s per-slot database into `group` (held by the caller) and
    remove it. Returns whether rows were copied by this call."""
    legacy = slot_dir / LEGACY_DB
    copied = False
    if legacy.exists() and not group.is_migrated(slot):
        tables = upgrade_legacy(legacy)
        group.adopt_slot_database(slot, legacy if tables else None, now)
        copied = True
    remove_legacy(slot_dir)
    return copied


def upgrade_legacy(path: Path) -> bool:
    """Bring a per-slot database to version 3; False when it has no schema at
    all (an empty file: a slot created but never written)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > LEGACY_VERSION:
            raise StorageCorrupt(f"{path}: schema version {version} is not that of a "
                                 "per-slot database")
        if version == 0:
            return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'file_entries'").fetchone() is not None
        if version < LEGACY_VERSION:
            steps = " ".join(_LEGACY_MIGRATIONS[v] for v in range(version, LEGACY_VERSION))
            # One transaction: a crash leaves the old version whole.
            db.executescript(f"BEGIN; {steps} PRAGMA user_version={LEGACY_VERSION}; COMMIT;")
        return True
    finally:
        db.close()


def remove_legacy(slot_dir: Path) -> None:
    """Remove the per-slot database, its WAL and shared memory (the main file
    first: without it, a WAL left behind is never read again)."""
    removed = False
    for suffix in _SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(slot_dir / f"{LEGACY_DB}{suffix}")
            removed = True
    for stale in slot_dir.glob(f".{LEGACY_DB}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a process that died creating one
    if removed:
        fsync_dir(slot_dir)
