"""Opt-in zstd compression of part files: the policy, the per-part encoder, the reader.

A part is compressed or not on its own: the first `probe_bytes` of each part
are compressed once as a sample, and the part is stored compressed only when
that sample shrinks below `max_ratio` of its size (already-compressed media,
encrypted or random data is stored as it is and costs one small probe). The
part's row says which (`compression` is 'zstd' or NULL), so parts of both
kinds can sit side by side in one object and stay readable whatever the
setting is later.

What does not change with compression: a part's sha256 and the file name are
those of the UNCOMPRESSED bytes (they name the content; the etag is the same
either way), and `size_bytes` is the logical size. The on-disk size is
recorded apart (`stored_bytes`).

A compressed part is one zstd frame without a seek table: a ranged read
decompresses from the start of the part and drops the bytes before the range
(at most one part, `part_size`, of extra work per range).

Every function here blocks; callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from rimio.core.errors import ConfigError, StorageCorrupt

NONE = "none"
ZSTD = "zstd"
CODECS = (NONE, ZSTD)
DEFAULT_LEVEL = 3
# The sample of each part that decides whether it is compressed, and the
# ratio (compressed / raw) it must reach: below 0.9 a part saves at least a
# tenth of its disk space for the time spent compressing it.
DEFAULT_PROBE_BYTES = 64 * 1024
DEFAULT_MAX_RATIO = 0.9
MIN_LEVEL, MAX_LEVEL = 1, 22
# How much compressed input a reader takes from the file at once.
_READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class CompressionPolicy:
    """How new parts are written: `codec` 'none' or 'zstd', at `level`."""

    codec: str = NONE
    level: int = DEFAULT_LEVEL
    probe_bytes: int = DEFAULT_PROBE_BYTES
    max_ratio: float = DEFAULT_MAX_RATIO

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError(f"compression must be one of {', '.join(CODECS)}, "
                              f"not {self.codec!r}")
        if not MIN_LEVEL <= self.level <= MAX_LEVEL:
            raise ConfigError(f"compression_level must be between {MIN_LEVEL} and {MAX_LEVEL}")
        if self.probe_bytes < 1:
            raise ConfigError("the compression probe needs at least one byte")

    @property
    def enabled(self) -> bool:
        return self.codec == ZSTD

    def worth_it(self, sample: bytes | memoryview) -> bool:
        """Whether a part that starts with `sample` is worth compressing."""
        if not self.enabled or not len(sample):
            return False
        squeezed = zstandard.ZstdCompressor(level=self.level).compress(sample)
        return len(squeezed) < self.max_ratio * len(sample)

    def encoder(self) -> PartEncoder:
        return PartEncoder(self)


NO_COMPRESSION = CompressionPolicy()


class PartEncoder:
    """Turns the bytes of one part into the bytes of its file.

    Until `probe_bytes` have been fed (or the part ends), input is held back;
    then the probe decides, and from there on input passes through as it is
    or through one zstd frame. `compression` says which, once decided.
    """

    def __init__(self, policy: CompressionPolicy) -> None:
        self._policy = policy
        # None: decided. Held input before that.
        self._held: bytearray | None = bytearray() if policy.enabled else None
        self._zstd: zstandard.ZstdCompressionObj | None = None
        self.compression: str | None = None

    def feed(self, data: memoryview) -> bytes | memoryview:
        """What to write to the file for `data` (maybe nothing yet)."""
        if self._held is None:
            return data if self._zstd is None else self._zstd.compress(data)
        probe = self._policy.probe_bytes
        if not self._held and len(data) >= probe:
            # The sample is all in this chunk: decide without copying it.
            self._decide(data[:probe])
            return self.feed(data)
        self._held += data
        if len(self._held) < probe:
            return b""
        held, self._held = self._held, None
        self._decide(memoryview(held)[:probe])
        return self.feed(memoryview(held))

    def finish(self) -> bytes | memoryview:
        """The rest of the file: held input, and the end of the zstd frame."""
        out: bytes | memoryview = b""
        if self._held is not None:
            held, self._held = self._held, None
            self._decide(memoryview(held))
            out = self.feed(memoryview(held))
        if self._zstd is not None:
            out = bytes(out) + self._zstd.flush()
        return out

    def _decide(self, sample: memoryview) -> None:
        self._held = None
        if self._policy.worth_it(sample):
            self._zstd = zstandard.ZstdCompressor(level=self._policy.level).compressobj()
            self.compression = ZSTD


class PartReader:
    """Sequential reads of one part file's logical bytes, from `offset` on.

    An uncompressed part is read at its offset directly; a compressed one is
    decompressed from its start, and what lies before `offset` is dropped.
    Not thread-safe: one reader serves one ranged read, one call at a time.
    """

    def __init__(self, path: Path, compression: str | None, offset: int) -> None:
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._stream: zstandard.ZstdDecompressionReader | None = None
        try:
            if compression is None:
                self._file.seek(offset)
            elif compression == ZSTD:
                self._stream = zstandard.ZstdDecompressor().stream_reader(
                    self._file, read_size=_READ_SIZE, closefd=False)
                self._skip(offset)
            else:
                raise ValueError(f"unknown part compression {compression!r}")
        except BaseException:
            self.close()
            raise

    def read(self, n: int) -> bytes:
        """Up to `n` bytes; fewer only at the end of the part."""
        if self._stream is None:
            return self._file.read(n)
        chunks: list[bytes] = []
        got = 0
        while got < n:
            try:
                chunk = self._stream.read(n - got)
            except zstandard.ZstdError as exc:
                raise StorageCorrupt(f"compressed part file is damaged: {exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _skip(self, n: int) -> None:
        while n > 0:
            dropped = len(self.read(min(n, _READ_SIZE)))
            if dropped == 0:
                return  # past the end: the caller sees a short read
            n -= dropped

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[no-untyped-call]  # (untyped in its stubs)
            self._stream = None
        self._file.close()


def read_part(path: Path, compression: str | None) -> bytes:
    """The whole logical content of one part file."""
    try:
        return _read_part(path, compression)
    except zstandard.ZstdError as exc:
        raise StorageCorrupt(f"compressed part file {path.name} is damaged: {exc}") from None


def _read_part(path: Path, compression: str | None) -> bytes:
    if compression is None:
        with open(path, "rb") as f:
            return f.read()
    if compression != ZSTD:
        raise ValueError(f"unknown part compression {compression!r}")
    with open(path, "rb") as f:
        # A streamed frame does not record its size: decompressobj copes.
        return zstandard.ZstdDecompressor().decompressobj().decompress(f.read())


def identify_part(path: Path, sha256: str, size: int) -> tuple[str | None, int] | None:
    """(compression, stored size) of an existing part file that holds the part
    with hash `sha256` and logical size `size`, or None if it holds something
    else (a damaged file). Only the rare retry that finds its part already in
    place pays for this: the file may have been written under another
    compression setting, and its row must say how it is stored."""
    stored = os.stat(path).st_size
    for compression in (None, ZSTD):
        try:
            data = _read_part(path, compression)
        except zstandard.ZstdError:
            continue
        if len(data) == size and hashlib.sha256(data).hexdigest() == sha256:
            return compression, stored
    return None
