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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rimio.storage.compression import (
    NO_COMPRESSION,
    CompressionPolicy,
    PartEncoder,
    identify_part,
)

TEMP_PREFIX = ".tmp-"
# Times a part file's directory chain is made again when a concurrent prune
# removed part of it before the file was created in it.
_DIR_RACE_RETRIES = 8


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

    Returns the directories created, outermost first. A parent is fsynced
    when it gained an entry, and once per process for a directory found
    existing; a known directory costs one stat and no fsync, so the chain of
    a path written before costs nothing.
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
    """rmdir directories `ensure_dir` created (innermost first) if they are
    empty; one already gone is skipped."""
    for d in reversed(created):
        DURABLE_DIRS.forget(d)
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            return  # not empty: someone else uses it, and so its parents


def part_name(index: int, sha256: str) -> str:
    return f"part.{index:08d}.{sha256}"


# Bytes a writer is given at once: one buffer, or a batch of received chunks
# written and hashed as they are (no copy into one buffer).
Chunks = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]


def chunks_of(data: Chunks) -> Sequence[bytes | bytearray | memoryview]:
    """`data` as a sequence of buffers."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return (data,)
    return data


@dataclass(frozen=True, slots=True)
class Piece:
    """A slice of the object's bytes that falls inside one part."""

    index: int  # the part
    view: memoryview
    last: bool  # the part's last bytes (the part is full after this piece)


class _OpenPart:
    """One part being written: its temp file (opened by the first piece
    written), its hash, and how far the writing and the hashing got. The file
    fields belong to the thread that writes, the hash to the one that hashes."""

    __slots__ = ("encoder", "fd", "full", "hash", "index", "length", "stored", "temp")

    def __init__(self, index: int, encoder: PartEncoder) -> None:
        self.index = index
        self.encoder = encoder
        self.temp: Path | None = None
        self.fd: int | None = None
        self.stored = 0  # bytes of the part's file so far
        self.hash = hashlib.sha256()
        self.length = 0  # bytes of the part cut so far
        self.full = False


class ObjectWriter:
    """Streams an object's bytes into part files of one generation directory.

    `write` may be called with chunks of any size; parts are cut at
    `part_size`. `finish` seals the last part and returns the records;
    `abort` removes every file this writer created. `compression` decides,
    part by part, whether a part file is stored compressed.

    `write` does everything in the calling thread. A pipelined caller splits
    it instead: `cut` the batch into pieces, then `write_pieces` and
    `hash_pieces` in two threads at once, then `seal` each part `full_parts`
    names (in another thread, while the next batch is written). Sealing a part
    (fsync, rename, directory fsync in `finish`) keeps the crash-safety order
    of the module docstring whichever thread does it.
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
        self._records: dict[int, PartRecord] = {}
        self._created: list[Path] = []
        self._created_dirs: list[Path] = []  # by this writer, outermost first
        self._compression = compression
        self._parts: dict[int, _OpenPart] = {}  # cut, not sealed yet
        self._dir_ready = False
        self._dir_lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: Chunks) -> None:
        """Write, hash and seal in the calling thread."""
        pieces = self.cut(data)
        self.write_pieces(pieces)
        self.hash_pieces(pieces)
        if self._object_hash is not None:
            for chunk in chunks_of(data):
                self._object_hash.update(chunk)
        for index in self.full_parts(pieces):
            self.seal(index)

    def cut(self, data: Chunks) -> list[Piece]:
        """The pieces of the next bytes of the object, part by part (no copy)."""
        pieces: list[Piece] = []
        for chunk in chunks_of(data):
            view = memoryview(chunk).cast("B")
            while len(view):
                index = self._first_index + self._size // self._part_size
                part = self._parts.get(index)
                if part is None:
                    part = self._parts[index] = _OpenPart(index, self._compression.encoder())
                room = self._part_size - part.length
                piece = view[:room]
                part.length += len(piece)
                self._size += len(piece)
                part.full = part.length == self._part_size
                pieces.append(Piece(index, piece, part.full))
                view = view[len(piece):]
        return pieces

    def write_pieces(self, pieces: Sequence[Piece]) -> None:
        """The file half of `pieces`: into their parts' temp files."""
        for piece in pieces:
            part = self._parts[piece.index]
            if part.fd is None:
                self._open_file(part)
            self._write_file(part, part.encoder.feed(piece.view))

    def hash_pieces(self, pieces: Sequence[Piece]) -> None:
        """The hash half of `pieces` (hashlib lets other threads run meanwhile)."""
        for piece in pieces:
            self._parts[piece.index].hash.update(piece.view)

    @staticmethod
    def full_parts(pieces: Sequence[Piece]) -> list[int]:
        """The parts these pieces completed: ready to seal once both halves ran."""
        return [p.index for p in pieces if p.last]

    def finish(self) -> tuple[list[PartRecord], str, int]:
        """Seal the last part; return (parts, etag, size). Every part named by
        `full_parts` must have been sealed."""
        for index in sorted(self._parts):
            part = self._parts[index]
            if part.length > 0:
                if part.fd is None:
                    self._open_file(part)
                self.seal(index)
        if self._dir_ready:
            fsync_dir(self._gen_dir)
        etag = self._object_hash.hexdigest() if self._object_hash is not None else ""
        return [self._records[i] for i in sorted(self._records)], etag, self._size

    def abort(self) -> None:
        for part in list(self._parts.values()):
            if part.fd is not None:
                os.close(part.fd)
                part.fd = None
            if part.temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part.temp)
                part.temp = None
        self._parts.clear()
        for path in self._created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._created.clear()
        # The generation directory and every parent left empty, whoever made
        # them (a write of the same path that ended meanwhile may have made
        # them): no empty directory chain stays behind. A concurrent write
        # that was about to use one makes it again (`_open_file`).
        prune_empty_dirs(self._gen_dir, self._slot_dir)
        # And the slot's own directories when this write made them.
        remove_dirs(self._created_dirs)
        self._created_dirs = []

    def _write_file(self, part: _OpenPart, data: bytes | memoryview) -> None:
        assert part.fd is not None
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.write(part.fd, view[written:])
        part.stored += written

    def _open_file(self, part: _OpenPart) -> None:
        part.temp = self._gen_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        for attempt in range(_DIR_RACE_RETRIES):
            try:
                with self._dir_lock:
                    if not self._dir_ready:
                        self._created_dirs += ensure_dir(self._gen_dir)
                        self._dir_ready = True
                part.fd = os.open(part.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                return
            except FileNotFoundError:
                # An empty directory of the chain was pruned between its mkdir
                # and this open (an aborted write of a sibling path, or garbage
                # collection): make the chain again.
                if attempt == _DIR_RACE_RETRIES - 1:
                    raise
                with self._dir_lock:
                    self._dir_ready = False

    def seal(self, index: int) -> None:
        """Make part `index` durable under its final name: its file and hash
        are complete (both halves of its last piece ran)."""
        part = self._parts[index]
        assert part.fd is not None and part.temp is not None
        self._write_file(part, part.encoder.finish())
        compression, stored = part.encoder.compression, part.stored
        os.fsync(part.fd)
        os.close(part.fd)
        part.fd = None
        sha = part.hash.hexdigest()
        name = part_name(index, sha)
        final = self._gen_dir / name
        existing = identify_part(final, sha, part.length) if final.exists() else None
        if existing is not None:
            # Same content at the same place: a retry; reuse the existing file,
            # stored as it was (the compression setting may have changed since).
            os.unlink(part.temp)
            compression, stored = existing
        else:
            # New, or a damaged file in the way: ours replaces it.
            os.rename(part.temp, final)
            self._created.append(final)
        part.temp = None
        del self._parts[index]
        self._records[index] = PartRecord(
            index, sha, part.length, f"{self._gen_rel}/{name}", compression=compression,
            stored_bytes=None if compression is None else stored)


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
    """rmdir `start` and its empty parents, never going above `stop/blobs`
    (a directory already gone is passed over: its parents may be empty)."""
    limit = stop / "blobs"
    d = start
    while d != limit and limit in d.parents:
        DURABLE_DIRS.forget(d)
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            return
        d = d.parent
