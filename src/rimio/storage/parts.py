"""Part files: durable, content-named files holding an object's bytes.

Every method here blocks (file I/O, fsync) and is meant to run in a worker
thread. A part is written to a temp name in its generation directory,
fsynced, renamed to `part.<index:08>.<sha256>`, and the directory is fsynced,
so a crash leaves either no part or a whole one. New directories are fsynced
into their parents too, once: `DURABLE_DIRS` remembers, per process, which
directories are known to be durable in their parent, so a path's existing
directory chain costs no fsync on the next write.

Objects small enough to live in the slot's SQLite row (see meta.py) have
part records without a file: `local_path` is None and `data` holds the bytes
(when they were loaded).

A part file may be zstd-compressed (storage/compression.py decides, part by
part); its name and sha256 stay those of the uncompressed bytes, and its
record says how it is stored and how large the file is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from rimio.storage.compression import NO_COMPRESSION, CompressionPolicy, identify_part

TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class PartRecord:
    index: int
    sha256: str
    size_bytes: int
    # relative to the slot directory; None: the part is inline in its SQLite row
    local_path: str | None
    # an inline part's bytes, when loaded (None for part files, and for inline
    # parts read without their bytes)
    data: bytes | None = None
    # how the part file is stored: None (as it is) or 'zstd'
    compression: str | None = None
    # the part file's size when it differs from `size_bytes` (compressed)
    stored_bytes: int | None = None

    @property
    def inline(self) -> bool:
        return self.local_path is None

    @property
    def file_bytes(self) -> int:
        """The size the part's file has on disk."""
        return self.size_bytes if self.stored_bytes is None else self.stored_bytes


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableDirs:
    """Directories whose entry in their parent is known to be durable.

    A directory joins after this process created it and fsynced its parent,
    or found it existing and fsynced its parent once (a previous process may
    have died between its mkdir and that fsync). Whoever removes a directory
    forgets it first, so an entry is never stale for a directory this process
    removed. Bounded: forgetting an entry only costs one more fsync later.
    """

    def __init__(self, limit: int = 65536) -> None:
        self._limit = limit
        self._known: OrderedDict[Path, None] = OrderedDict()
        self._lock = threading.Lock()
        self.fsyncs = 0  # directory fsyncs done by ensure_dir (for tests and benchmarks)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            if path in self._known:
                assert isinstance(path, Path)
                self._known.move_to_end(path)
                return True
            return False

    def add(self, path: Path) -> None:
        with self._lock:
            self._known[path] = None
            self._known.move_to_end(path)
            while len(self._known) > self._limit:
                self._known.popitem(last=False)

    def forget(self, path: Path) -> None:
        with self._lock:
            self._known.pop(path, None)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


DURABLE_DIRS = DurableDirs()


def ensure_dir(path: Path) -> list[Path]:
    """Make `path` an existing directory whose entry is durable in its parent.

    Returns the directories created, outermost first (an aborted write removes
    exactly those). A parent is fsynced when it gained an entry, and once per
    process for a directory found existing; a known directory costs one stat
    and no fsync, so the chain of a path written before costs nothing.
    """
    if path in DURABLE_DIRS:
        if os.path.isdir(path):
            return []
        DURABLE_DIRS.forget(path)  # removed behind this process's back
    created: list[Path] = []
    try:
        os.mkdir(path)
        created.append(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        if path.parent == path:
            raise
        created = ensure_dir(path.parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
            created.append(path)
    parent = path.parent
    if created and parent not in DURABLE_DIRS and parent != path:
        # The parent existed but this process never made sure of its own entry.
        ensure_dir(parent)
    fsync_dir(parent)
    DURABLE_DIRS.fsyncs += 1
    DURABLE_DIRS.add(path)
    return created


def remove_dirs(created: list[Path]) -> None:
    """rmdir directories `ensure_dir` created (innermost first) if they are empty."""
    for d in reversed(created):
        DURABLE_DIRS.forget(d)
        try:
            os.rmdir(d)
        except OSError:
            return  # not empty: someone else uses it, and so its parents


def part_name(index: int, sha256: str) -> str:
    return f"part.{index:08d}.{sha256}"


class ObjectWriter:
    """Streams an object's bytes into part files of one generation directory.

    `write` may be called with chunks of any size; parts are cut at
    `part_size`. `finish` seals the last part and returns the records;
    `abort` removes every file this writer created. `compression` decides,
    part by part, whether a part file is stored compressed.
    """

    def __init__(self, slot_dir: Path, gen_dir_rel: str, part_size: int, *,
                 hash_object: bool = True,
                 compression: CompressionPolicy = NO_COMPRESSION,
                 first_index: int = 0) -> None:
        # hash_object=False: the caller hashes the whole object itself (in
        # parallel); `finish` then reports an empty etag. `first_index`: the
        # index of the first part written (a replica receives an object's
        # parts one request at a time).
        self._first_index = first_index
        self._slot_dir = slot_dir
        self._gen_rel = gen_dir_rel
        self._gen_dir = slot_dir / gen_dir_rel
        self._part_size = part_size
        self._object_hash = hashlib.sha256() if hash_object else None
        self._size = 0
        self._records: list[PartRecord] = []
        self._created: list[Path] = []
        self._created_dirs: list[Path] = []
        self._temp: Path | None = None
        self._fd: int | None = None
        self._part_hash = hashlib.sha256()
        self._part_len = 0
        self._compression = compression
        self._encoder = compression.encoder()
        self._stored_len = 0  # bytes of the current part's file
        self._dir_ready = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            if self._fd is None:
                self._open_part()
            room = self._part_size - self._part_len
            chunk = view[:room]
            self._write_file(self._encoder.feed(chunk))
            self._part_hash.update(chunk)
            if self._object_hash is not None:
                self._object_hash.update(chunk)
            self._part_len += len(chunk)
            self._size += len(chunk)
            view = view[len(chunk):]
            if self._part_len == self._part_size:
                self._seal_part()

    def finish(self) -> tuple[list[PartRecord], str, int]:
        """Seal the last part; return (parts, etag, size)."""
        if self._fd is not None and self._part_len > 0:
            self._seal_part()
        if self._dir_ready:
            fsync_dir(self._gen_dir)
        etag = self._object_hash.hexdigest() if self._object_hash is not None else ""
        return list(self._records), etag, self._size

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None
        for path in self._created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._created.clear()
        dirs = self._created_dirs
        if self._gen_dir not in dirs:
            dirs = [*dirs, self._gen_dir]  # a retry into an existing generation directory
        remove_dirs(dirs)  # only the empty ones: nobody else uses them
        self._created_dirs = []

    def _write_file(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.write(self._fd, view[written:])
        self._stored_len += written

    def _open_part(self) -> None:
        if not self._dir_ready:
            self._created_dirs = ensure_dir(self._gen_dir)
            self._dir_ready = True
        self._temp = self._gen_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._part_hash = hashlib.sha256()
        self._part_len = 0
        self._encoder = self._compression.encoder()
        self._stored_len = 0

    def _seal_part(self) -> None:
        assert self._fd is not None and self._temp is not None
        self._write_file(self._encoder.finish())
        compression, stored = self._encoder.compression, self._stored_len
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        index = self._first_index + len(self._records)
        sha = self._part_hash.hexdigest()
        name = part_name(index, sha)
        final = self._gen_dir / name
        existing = identify_part(final, sha, self._part_len) if final.exists() else None
        if existing is not None:
            # Same content at the same place: a retry; reuse the existing file,
            # stored as it was (the compression setting may have changed since).
            os.unlink(self._temp)
            compression, stored = existing
        else:
            # New, or a damaged file in the way: ours replaces it.
            os.rename(self._temp, final)
            self._created.append(final)
        self._temp = None
        self._records.append(PartRecord(
            index, sha, self._part_len, f"{self._gen_rel}/{name}", compression=compression,
            stored_bytes=None if compression is None else stored))


def read_range(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def remove_files(slot_dir: Path, rel_paths: list[str]) -> None:
    """Unlink files (missing ones are fine) and prune directories left empty."""
    dirs: set[Path] = set()
    for rel in rel_paths:
        path = slot_dir / rel
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        dirs.add(path.parent)
    for d in dirs:
        prune_empty_dirs(d, slot_dir)


def prune_empty_dirs(start: Path, stop: Path) -> None:
    """rmdir `start` and its empty parents, never going above `stop/blobs`."""
    limit = stop / "blobs"
    d = start
    while d != limit and limit in d.parents:
        DURABLE_DIRS.forget(d)
        try:
            os.rmdir(d)
        except OSError:
            return
        d = d.parent
