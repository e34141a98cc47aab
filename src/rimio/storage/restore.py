"""Restoring one part file of a head already stored (rfcs/0017-scrub.md).

A part whose file was quarantined (it failed its sha256 check) or is missing
is brought back from another replica without touching anything else of its
head: the bytes are written to a temp file under `<disk>/restoring/` (not in
the generation directory, where nothing would clean a temp file a crash
left, nor in the quarantine, which holds evidence only: this directory is
emptied at start), hashed as they are written,
fsynced, and only when they hash to the part's sha256 and have its size is
the file renamed onto the part's name (the same file system: atomic) and the
directory fsynced. Restored files are written as they are (never
compressed): the part's row is told so. Every method blocks (file I/O);
callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path

from rimio.storage.parts import ensure_dir, fsync_dir

RESTORING_DIR = "restoring"


def restoring_dir(disk: Path) -> Path:
    return disk / RESTORING_DIR


def clear_restoring(disk: Path) -> int:
    """Remove what restores interrupted by a crash left on `disk` (at start,
    before anything restores). Returns the files removed."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(restoring_dir(disk)):
            if entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


class RestoreFile:
    """The new file of one part, written to a temp name on `disk` and hashed
    as it is written; at most `limit` bytes are accepted."""

    def __init__(self, disk: Path, limit: int) -> None:
        folder = restoring_dir(disk)
        ensure_dir(folder)
        self.temp: Path | None = folder / f"{uuid.uuid4().hex}"
        self._fd: int | None = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._hash = hashlib.sha256()
        self._limit = limit
        self.size = 0

    def write(self, data: bytes) -> bool:
        """Append `data`; False (nothing written) once more than `limit` bytes came."""
        assert self._fd is not None
        if self.size + len(data) > self._limit:
            return False
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.write(self._fd, view[written:])
        self._hash.update(data)
        self.size += len(data)
        return True

    def seal(self) -> str:
        """Make the bytes durable; their sha256."""
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        return self._hash.hexdigest()

    def install(self, final: Path) -> None:
        """Rename the sealed file onto `final` (replacing whatever is there)
        and make the rename durable."""
        assert self._fd is None and self.temp is not None
        ensure_dir(final.parent)
        os.rename(self.temp, final)
        self.temp = None
        fsync_dir(final.parent)

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None
