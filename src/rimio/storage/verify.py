"""Verified reads: the check of a part's bytes against the sha256 that names
it, and what happens to a part that fails it (rfcs/0013-verified-reads.md).

A part that fails is quarantined, never deleted: its file moves to
`<disk>/quarantine/<slot>/<its path under the slot directory>` (an inline
part's bytes are copied there, `<slot>/inline/...`), so the evidence stays
and the part is missing where it was: a read of it now says so (a
coordinator falls back to another replica) and a repair that uploads the
part again lands on a free name. Every function here blocks (file I/O);
callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from rimio.storage.parts import ensure_dir

log = logging.getLogger("rimio.storage.verify")

QUARANTINE_DIR = "quarantine"
# Parts up to this size are read whole and checked before their first byte is
# served (a bad small part is refused before the answer starts); larger ones
# are hashed while they stream and checked before their last chunk goes out.
VERIFY_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class VerifyStats:
    """Parts read and checked, and those that failed (and were quarantined)."""

    verified_parts: int
    errors: int
    quarantined: int


class VerifyCounters:
    """The counters behind `VerifyStats` (thread-safe: worker threads count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verified = 0
        self._errors = 0
        self._quarantined = 0

    def verified(self) -> None:
        with self._lock:
            self._verified += 1

    def failed(self, quarantined: bool) -> None:
        with self._lock:
            self._errors += 1
            self._quarantined += int(quarantined)

    def snapshot(self) -> VerifyStats:
        with self._lock:
            return VerifyStats(self._verified, self._errors, self._quarantined)


def sha256_of(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def quarantine_target(disk: Path, slot: int, rel: str) -> Path:
    """Where the file at `rel` (under the slot's directory) is quarantined; a
    free name (`.1`, `.2`, ... appended when an earlier copy is there)."""
    base = disk / QUARANTINE_DIR / str(slot) / rel
    target, n = base, 0
    while target.exists():
        n += 1
        target = base.with_name(f"{base.name}.{n}")
    return target


def quarantine_file(slot_dir: Path, slot: int, rel: str) -> Path | None:
    """Move the part file at `slot_dir/rel` into its disk's quarantine (the
    same file system: a rename). None when the file is already gone."""
    disk = slot_dir.parent.parent
    target = quarantine_target(disk, slot, rel)
    ensure_dir(target.parent)
    try:
        os.rename(slot_dir / rel, target)
    except FileNotFoundError:
        return None
    return target


def quarantine_bytes(slot_dir: Path, slot: int, name: str, data: bytes) -> Path:
    """Keep a copy of an inline part's bytes in the quarantine (`name`: the
    part's path, generation and index, made file-safe by the caller)."""
    disk = slot_dir.parent.parent
    target = quarantine_target(disk, slot, f"inline/{name}")
    ensure_dir(target.parent)
    with open(target, "xb") as f:
        f.write(data)
        os.fsync(f.fileno())
    return target
