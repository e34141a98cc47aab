"""zstd compression of part files: round trips, ranged reads across compressed
parts, the ratio probe skipping incompressible data, objects with parts of
both kinds, switching the setting between writes, retries that find their
part stored the other way, damage detection, and the write sequence's
clean-up unchanged."""

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from rimio.core.errors import ConfigError, StorageCorrupt
from rimio.core.head import Head
from rimio.core.writes import CommitOutcome
from rimio.storage.compression import (
    ZSTD,
    CompressionPolicy,
    PartEncoder,
    PartReader,
    identify_part,
    read_part,
)
from rimio.storage.meta import group_file
from rimio.storage.parts import ObjectWriter
from rimio.storage.store import READ_CHUNK, LocalStore
from rimio.storage.writes import LocalWrite

PART = 128 * 1024


def _text(n: int) -> bytes:
    """Compressible but not trivial: hex of random bytes (about half its size in zstd)."""
    return os.urandom(n // 2 + 1).hex().encode()[:n]


async def _open(root: Path, compression: str = "zstd", part: int = PART,
                **kw: Any) -> LocalStore:
    store = LocalStore([root], total_slots=8, part_size=part, io_threads=4, inline_max_bytes=0,
                       compression=compression, read_cache_bytes=0, **kw)
    await store.open()
    return store


async def _chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def _put(store: LocalStore, slot: int, path: str, content: Any,
               now: float = 1.0) -> Head:
    heads: list[Head] = []

    def result_for(head: Head) -> dict[str, Any]:
        heads.append(head)
        return {}

    report = await store.write(slot, path, content, write_id="", clock=lambda: now,
                               precondition=None, result_for=result_for)
    assert report.outcome is CommitOutcome.APPLIED
    return heads[-1]


async def _read(store: LocalStore, slot: int, path: str, start: int = 0,
                end: int | None = None) -> bytes:
    obj = await store.get_object(slot, path)
    assert obj is not None
    await store.check_parts_present(obj)
    out = bytearray()
    async for chunk in store.read_object(obj, start,
                                         obj.head.size_bytes - 1 if end is None else end):
        assert len(chunk) <= READ_CHUNK
        out += chunk
    return bytes(out)


def _part_rows(root: Path, slot: int, path: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(group_file(root, slot))
    try:
        return list(db.execute(
            "SELECT part_index, sha256, size_bytes, compression, stored_bytes, local_path "
            "FROM file_entries WHERE entry_kind = 'part' AND path = ? "
            "ORDER BY generation, part_index", (path,)).fetchall())
    finally:
        db.close()


def _part_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("part.*") if p.is_file())


@pytest.mark.parametrize("streamed", [False, True])
async def test_round_trip_keeps_names_hashes_and_etag(tmp_path: Path, streamed: bool) -> None:
    data = _text(3 * PART + 1234)
    plain = await _open(tmp_path / "plain", compression="none")
    packed = await _open(tmp_path / "packed")
    heads = [await _put(s, 1, "t", _chunks(data) if streamed else data)
             for s in (plain, packed)]
    # The head (etag, sizes, part hashes) is the same whether or not parts are compressed.
    assert heads[0] == heads[1] and heads[1].etag == hashlib.sha256(data).hexdigest()
    for store in (plain, packed):
        assert await _read(store, 1, "t") == data
    rows = _part_rows(tmp_path / "packed", 1, "t")
    assert [r[3] for r in rows] == [ZSTD] * 4
    assert [r[1:3] for r in rows] == [r[1:3] for r in _part_rows(tmp_path / "plain", 1, "t")]
    for index, sha, size, _, stored, rel in rows:
        f = tmp_path / "packed/slots/1" / rel
        assert f.name == f"part.{index:08d}.{sha}"  # named by the uncompressed content
        assert f.stat().st_size == stored < 0.7 * size
        content = read_part(f, ZSTD)
        assert len(content) == size and hashlib.sha256(content).hexdigest() == sha
    assert [r[3:5] for r in _part_rows(tmp_path / "plain", 1, "t")] == [(None, None)] * 4
    for store in (plain, packed):
        await store.close()


async def test_ranges_across_compressed_parts(tmp_path: Path) -> None:
    part = 3 * READ_CHUNK // 2  # a range inside one part spans more than one read chunk
    data = _text(3 * part + 777)
    store = await _open(tmp_path, part=part)
    await _put(store, 2, "r", data)
    size = len(data)
    for start, end in [(0, 0), (0, size - 1), (part - 1, part), (part - 5, 2 * part + 5),
                       (part + READ_CHUNK - 1, part + READ_CHUNK + 1), (size - 1, size - 1),
                       (2 * part + 3, size - 1), (17, READ_CHUNK + 17)]:
        assert await _read(store, 2, "r", start, end) == data[start:end + 1], (start, end)
    # a whole small read (one hop) decompresses too
    small = _text(1000)
    await _put(store, 2, "small", small)
    obj, got = await store.read_small(2, "small", 4096)
    assert obj is not None and got == small and obj.parts[0].compression == ZSTD
    await store.close()


async def test_incompressible_data_is_stored_as_it_is(tmp_path: Path) -> None:
    data = os.urandom(2 * PART + 5)
    store = await _open(tmp_path)
    await _put(store, 3, "rand", data)
    rows = _part_rows(tmp_path, 3, "rand")
    assert [r[3:5] for r in rows] == [(None, None)] * 3
    assert sorted(f.stat().st_size for f in _part_files(tmp_path)) == [5, PART, PART]
    assert await _read(store, 3, "rand", 10, 2 * PART + 2) == data[10:2 * PART + 3]
    await store.close()


async def test_mixed_parts_in_one_object(tmp_path: Path) -> None:
    data = _text(PART) + os.urandom(PART) + _text(PART // 3)
    store = await _open(tmp_path)
    await _put(store, 4, "mixed", _chunks(data, 7000))
    assert [r[3] for r in _part_rows(tmp_path, 4, "mixed")] == [ZSTD, None, ZSTD]
    assert await _read(store, 4, "mixed") == data
    assert await _read(store, 4, "mixed", PART - 3, 2 * PART + 3) == data[PART - 3:2 * PART + 4]
    await store.close()


async def test_the_probe_decides_on_the_start_of_each_part(tmp_path: Path) -> None:
    policy = CompressionPolicy(ZSTD, probe_bytes=1024)
    assert policy.worth_it(_text(1024)) and not policy.worth_it(os.urandom(1024))
    assert not CompressionPolicy().worth_it(_text(1024))  # 'none' never compresses
    # A random start hides a compressible rest: the part stays as it is.
    store = await _open(tmp_path)
    await _put(store, 5, "p", os.urandom(64 * 1024) + bytes(PART - 64 * 1024))
    assert [r[3] for r in _part_rows(tmp_path, 5, "p")] == [None]
    # The probe sees the data fed in pieces of any size.
    for pieces in ([_text(5000)], [_text(10)] * 300, [_text(1024), _text(1)]):
        enc = PartEncoder(policy)
        out = b"".join(bytes(enc.feed(memoryview(p))) for p in pieces) + bytes(enc.finish())
        assert enc.compression == ZSTD
        assert zstandard.ZstdDecompressor().decompressobj().decompress(out) == b"".join(pieces)
    await store.close()


async def test_switching_the_setting_between_writes(tmp_path: Path) -> None:
    one, two, three = (_text(PART + PART // 2 + i) for i in range(3))
    store = await _open(tmp_path, compression="zstd")
    await _put(store, 6, "one", one)
    await store.close()
    store = await _open(tmp_path, compression="none")
    assert await _read(store, 6, "one") == one  # compressed data stays readable
    await _put(store, 6, "two", two)
    await _put(store, 6, "one", three, now=2.0)  # an overwrite, stored the new way
    await store.close()
    store = await _open(tmp_path, compression="zstd")
    assert await _read(store, 6, "two") == two  # uncompressed data stays readable
    assert await _read(store, 6, "one") == three
    assert [r[3] for r in _part_rows(tmp_path, 6, "one")] == [ZSTD, ZSTD, None, None]
    assert [r[3] for r in _part_rows(tmp_path, 6, "two")] == [None, None]
    await store.close()


@pytest.mark.parametrize(("first", "second"), [("zstd", "none"), ("none", "zstd")])
def test_retry_reuses_a_part_stored_the_other_way(tmp_path: Path, first: str,
                                                  second: str) -> None:
    data = _text(PART)
    records = []
    for codec in (first, second):
        w = ObjectWriter(tmp_path, "blobs/x/g.1", PART, compression=CompressionPolicy(codec))
        w.write(data)
        records.append(w.finish()[0][0])
    a, b = records
    assert b == a  # the row of the retry describes the file as it is on disk
    f = tmp_path / a.local_path  # type: ignore[operator]
    assert identify_part(f, a.sha256, PART) == (a.compression, f.stat().st_size)
    assert read_part(f, a.compression) == data
    f.write_bytes(b"damaged")
    assert identify_part(f, a.sha256, PART) is None


async def test_damaged_compressed_part_is_reported(tmp_path: Path) -> None:
    data = _text(PART)
    store = await _open(tmp_path)
    await _put(store, 7, "d", data)
    (f,) = _part_files(tmp_path)
    raw = f.read_bytes()
    f.write_bytes(raw[:len(raw) // 2])  # truncated: the recorded stored size no longer fits
    obj = await store.get_object(7, "d")
    assert obj is not None
    with pytest.raises(StorageCorrupt):
        await store.check_parts_present(obj)
    with pytest.raises(StorageCorrupt):
        await _read(store, 7, "d")
    f.write_bytes(raw[:8] + bytes(len(raw) - 8))  # the right size, garbage inside
    with pytest.raises(StorageCorrupt):
        await store.read_small(7, "d", 1 << 20)
    with pytest.raises(StorageCorrupt):
        reader = PartReader(f, ZSTD, 0)
        try:
            reader.read(PART)
        finally:
            reader.close()
    await store.close()


async def test_interrupted_compressed_write_is_cleaned_at_open(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    torn = LocalWrite(1, "torn", store.slot_dir(1), PART, tombstone=False, write_id="",
                      precondition=None, result_for=lambda h: {},
                      compression=store.compression)
    with store._cache.acquire(1) as meta:
        assert torn.admit(meta, 1.0) is None
    torn.write(_text(PART + 10))  # one sealed compressed part and one temp file
    assert len([p for p in (tmp_path / "slots/1/blobs").rglob("*") if p.is_file()]) == 2
    await store.close()
    store = await _open(tmp_path)
    assert store.recovered_writes == 1
    assert not (tmp_path / "slots/1/blobs/torn").exists()
    torn.remove_files()
    await store.close()


async def test_failed_compressed_write_leaves_nothing(tmp_path: Path) -> None:
    store = await _open(tmp_path)

    def broken(head: Head) -> dict[str, Any]:
        raise RuntimeError("no result")

    for content in (_text(2 * PART), _chunks(_text(2 * PART))):
        with pytest.raises(RuntimeError):
            await store.write(2, "e", content, write_id="", clock=lambda: 1.0,
                              precondition=None, result_for=broken)
        assert _part_files(tmp_path) == []
    await store.close()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalStore([tmp_path], total_slots=4, part_size=PART, compression="gzip")
    with pytest.raises(ConfigError):
        LocalStore([tmp_path], total_slots=4, part_size=PART, compression="zstd",
                   compression_level=0)
