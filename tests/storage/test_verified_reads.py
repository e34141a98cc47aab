"""Verified reads on a real LocalStore (rfcs/0013): a part whose bytes do not
hash to its sha256 (one flipped bit on disk, or in its SQLite row) is never
served whole; it is quarantined, counted, and a retry that finds it replaces it.
Each test also runs with `verify_reads=False` to show it fails without the check."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rimio.core.errors import PartCorrupt, StorageCorrupt
from rimio.core.head import Head
from rimio.core.replica import PartMissing
from rimio.storage.meta import group_file
from rimio.storage.store import LocalStore, StoredObject
from rimio.storage.verify import QUARANTINE_DIR, VERIFY_BUFFER_BYTES
from rimio.testing.damage import flip_bit, flip_inline_bit

SLOT = 3


async def _open(tmp_path: Path, *, part_size: int = 4096, inline: int = 0,
                verify: bool = True, compression: str = "none") -> LocalStore:
    store = LocalStore([tmp_path / "disk"], total_slots=16, part_size=part_size,
                       inline_max_bytes=inline, read_cache_bytes=0,
                       compression=compression, verify_reads=verify)
    await store.open()
    return store


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _result(head: Head) -> dict[str, Any]:
    return {"generation": head.generation}


async def _write(store: LocalStore, path: str, data: bytes, *, streamed: bool = True) -> None:
    content: Any = _chunks(data) if streamed else data
    await store.write(SLOT, path, content, write_id="", clock=lambda: 2.0, precondition=None,
                      result_for=_result)


def _flip(file: Path, at: int) -> None:
    flip_bit(file, at * 8)


def _part_file(store: LocalStore, obj: StoredObject, index: int) -> Path:
    local = obj.parts[index].local_path
    assert local is not None
    return obj.slot_dir / local


def _quarantined(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "disk" / QUARANTINE_DIR).rglob("*") if p.is_file()]


async def _collect(store: LocalStore, obj: StoredObject, start: int, end: int,
                   out: bytearray) -> None:
    async for chunk in store.read_object(obj, start, end):
        out += chunk


@pytest.mark.parametrize("verify", [True, False])
async def test_a_small_part_with_one_flipped_bit_is_refused_before_its_first_byte(
        tmp_path: Path, verify: bool) -> None:
    store = await _open(tmp_path, verify=verify)
    data = os.urandom(3000)
    await _write(store, "a/small", data)
    obj = await store.get_object(SLOT, "a/small")
    assert obj is not None
    file = _part_file(store, obj, 0)
    _flip(file, 1234)
    out = bytearray()
    if not verify:  # without the check the wrong bytes go out whole: the test can fail
        await _collect(store, obj, 0, len(data) - 1, out)
        assert len(out) == len(data) and bytes(out) != data
        return
    with pytest.raises(PartCorrupt):
        await _collect(store, obj, 0, len(data) - 1, out)
    assert out == b""  # checked before the first byte
    assert not file.exists()
    [evidence] = _quarantined(tmp_path)
    assert evidence.name == file.name and f"/{QUARANTINE_DIR}/{SLOT}/blobs/" in str(evidence)
    stats = store.verify_stats
    assert (stats.errors, stats.quarantined) == (1, 1)
    # The part is missing now: a later read says so (no second quarantine).
    with pytest.raises(StorageCorrupt):
        await store.check_parts_present(obj)
    # The whole-object read in one call (the lean GET path) refuses it too.
    await _write(store, "a/other", data)
    other = await store.get_object(SLOT, "a/other")
    assert other is not None
    _flip(_part_file(store, other, 0), 0)
    with pytest.raises(PartCorrupt):
        await store.read_small(SLOT, "a/other", VERIFY_BUFFER_BYTES)
    assert store.verify_stats.errors == 2
    await store.close()


@pytest.mark.parametrize("verify", [True, False])
async def test_a_range_inside_a_corrupt_part_is_refused_even_if_its_bytes_are_intact(
        tmp_path: Path, verify: bool) -> None:
    store = await _open(tmp_path, verify=verify)
    data = os.urandom(4096 * 2 + 100)
    await _write(store, "a/range", data)
    obj = await store.get_object(SLOT, "a/range")
    assert obj is not None
    _flip(_part_file(store, obj, 1), 4000)  # the range below does not cover this byte
    out = bytearray()
    if not verify:
        await _collect(store, obj, 4096 + 10, 4096 + 20, out)
        assert bytes(out) == data[4106:4117]  # served although its part is bad
        return
    with pytest.raises(PartCorrupt):
        await _collect(store, obj, 4096 + 10, 4096 + 20, out)
    assert out == b""
    await store.close()


@pytest.mark.parametrize("verify", [True, False])
async def test_a_large_part_corrupt_at_its_end_never_gets_its_last_chunk_out(
        tmp_path: Path, verify: bool) -> None:
    part = 3 * VERIFY_BUFFER_BYTES  # streamed and hashed as it goes
    store = await _open(tmp_path, part_size=part, verify=verify)
    data = os.urandom(2 * part + 5000)
    await _write(store, "big/x", data)
    obj = await store.get_object(SLOT, "big/x")
    assert obj is not None
    _flip(_part_file(store, obj, 1), part - 1)  # the 2nd part's very last byte
    out = bytearray()
    if not verify:
        await _collect(store, obj, 0, len(data) - 1, out)
        assert len(out) == len(data) and bytes(out) != data
        return
    with pytest.raises(PartCorrupt):
        await _collect(store, obj, 0, len(data) - 1, out)
    # the first part whole, the second one short: its last chunk was held back
    assert part <= len(out) < 2 * part
    assert bytes(out) == data[:len(out)]
    assert len(_quarantined(tmp_path)) == 1
    # A range within the large part that ends before the flipped byte: refused too.
    await _write(store, "big/y", data)
    y = await store.get_object(SLOT, "big/y")
    assert y is not None
    _flip(_part_file(store, y, 0), part - 1)
    out = bytearray()
    with pytest.raises(PartCorrupt):
        await _collect(store, y, 100, 200, out)
    assert out == b""
    await store.close()


async def test_a_corrupt_compressed_part_is_refused(tmp_path: Path) -> None:
    # The sha256 covers the uncompressed bytes (RFC 0009): they are what is checked.
    store = await _open(tmp_path, compression="zstd")
    data = b"compressible text " * 200
    await _write(store, "z/x", data)
    obj = await store.get_object(SLOT, "z/x")
    assert obj is not None and obj.parts[0].compression == "zstd"
    out = bytearray()
    await _collect(store, obj, 0, len(data) - 1, out)
    assert bytes(out) == data  # a good compressed part reads and checks fine
    file = _part_file(store, obj, 0)
    _flip(file, file.stat().st_size // 2)
    out = bytearray()
    with pytest.raises(StorageCorrupt):  # PartCorrupt, or a frame zstd refuses
        await _collect(store, obj, 0, len(data) - 1, out)
    assert out == b""
    await store.close()


def _corrupt_inline(tmp_path: Path, path: str) -> None:
    flip_inline_bit(group_file(tmp_path / "disk", SLOT), 7 * 8, path=path)


@pytest.mark.parametrize("verify", [True, False])
async def test_an_inline_object_corrupted_in_sqlite_is_caught(tmp_path: Path,
                                                              verify: bool) -> None:
    store = await _open(tmp_path, inline=4096, verify=verify)
    data = os.urandom(500)
    await _write(store, "i/x", data, streamed=False)
    _corrupt_inline(tmp_path, "i/x")
    if not verify:
        _, got = await store.read_small(SLOT, "i/x", VERIFY_BUFFER_BYTES)
        assert got is not None and got != data
        return
    with pytest.raises(PartCorrupt):
        await store.read_small(SLOT, "i/x", VERIFY_BUFFER_BYTES)
    [evidence] = _quarantined(tmp_path)
    assert f"/{QUARANTINE_DIR}/{SLOT}/inline/" in str(evidence)
    assert evidence.read_bytes() != data and len(evidence.read_bytes()) == len(data)
    # marked missing: a replica's part read says so, a local read refuses it
    obj = await store.get_object(SLOT, "i/x")
    assert obj is not None
    with pytest.raises(PartMissing):
        async for _ in store.read_part(SLOT, "i/x", obj.head.generation, obj.head.sha256,
                                       0, 0, None):
            pass
    with pytest.raises(StorageCorrupt):
        await store.read_small(SLOT, "i/x", VERIFY_BUFFER_BYTES)
    # A repair that brings the same head with its inline bytes restores them.
    applied, _ = await store.apply_head(obj.head, (), data, None, clock=lambda: 3.0)
    assert applied
    _, got = await store.read_small(SLOT, "i/x", VERIFY_BUFFER_BYTES)
    assert got == data
    await store.close()


async def test_a_replica_part_read_checks_and_quarantines(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(4096 + 10)
    await _write(store, "r/x", data)
    obj = await store.get_object(SLOT, "r/x")
    assert obj is not None
    _flip(_part_file(store, obj, 0), 5)
    with pytest.raises(PartCorrupt):
        async for _ in store.read_part(SLOT, "r/x", obj.head.generation, obj.head.sha256,
                                       0, 0, None):
            raise AssertionError("no byte of a corrupt small part goes out")
    # quarantined: the part is missing there now, for the coordinator to fall back
    with pytest.raises(PartMissing):
        async for _ in store.read_part(SLOT, "r/x", obj.head.generation, obj.head.sha256,
                                       0, 0, None):
            pass
    assert store.verify_stats.quarantined == 1
    await store.close()


async def test_a_retry_that_finds_a_corrupt_part_file_replaces_it(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(4096 + 10)
    await _write(store, "p/x", data)
    obj = await store.get_object(SLOT, "p/x")
    assert obj is not None
    file = _part_file(store, obj, 0)
    _flip(file, 10)
    # A repair (or a retried upload) of the same part at the same generation:
    # the file in place is checked before it is reused, and replaced.
    record = await store.put_part(SLOT, "p/x", obj.head.generation, 0,
                                  _chunks(data[:4096]), clock=lambda: 3.0)
    assert record.sha256 == hashlib.sha256(data[:4096]).hexdigest()
    assert file.read_bytes() == data[:4096]
    out = bytearray()
    await _collect(store, obj, 0, len(data) - 1, out)
    assert bytes(out) == data
    await store.close()
