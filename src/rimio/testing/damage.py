"""Damage done to a node's disk behind its back, as a bad sector would: the
tests of verified reads, the scrub and the planted-divergence suite use these
to break a part file or an inline row and watch the store notice."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def flip_bit(file: Path, bit: int) -> None:
    """Flip bit `bit` (counted from the file's first byte) of `file` in place."""
    with open(file, "r+b") as f:
        f.seek(bit // 8)
        byte = f.read(1)
        f.seek(bit // 8)
        f.write(bytes([byte[0] ^ (1 << (bit % 8))]))


def flip_inline_bit(db_path: Path, bit: int, *, path: str, slot: int | None = None,
                    generation: int | None = None, head_sha256: str | None = None,
                    index: int | None = None) -> None:
    """Flip bit `bit` of the inline bytes of one part row of `path` in the
    metadata database `db_path` (narrowed by slot, generation, head and part
    index when given); AssertionError when no such row holds inline bytes."""
    where = "WHERE path = ? AND entry_kind = 'part' AND local_path IS NULL"
    key: list[object] = [path]
    for column, value in (("slot_id", slot), ("generation", generation),
                          ("head_sha256", head_sha256), ("part_index", index)):
        if value is not None:
            where += f" AND {column} = ?"
            key.append(value)
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        row = db.execute(f"SELECT id, inline_data FROM file_entries {where}", key).fetchone()
        if row is None or row[1] is None:
            raise AssertionError(f"{path}: no inline bytes to damage")
        data = bytearray(row[1])
        data[bit // 8] ^= 1 << (bit % 8)
        db.execute("UPDATE file_entries SET inline_data = ? WHERE id = ?", (bytes(data), row[0]))
    finally:
        db.close()
