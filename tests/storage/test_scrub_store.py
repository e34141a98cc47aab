"""The store's side of the scrub (rfcs/0017) on a real LocalStore: checking one
part (good, a flipped bit, a deleted file, a damaged inline row, a head
gone), and restoring one part in place, which installs only bytes that hash
to the part's own row and changes nothing otherwise (Hypothesis throws any
bytes at it)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rimio.core.errors import BadRequest, StorageCorrupt
from rimio.core.head import Head
from rimio.core.replica import PartMissing
from rimio.core.scrub import PartCheck
from rimio.storage.meta import group_file
from rimio.storage.restore import restoring_dir
from rimio.storage.store import LocalStore, StoredObject
from rimio.storage.verify import QUARANTINE_DIR
from rimio.testing.damage import flip_bit, flip_inline_bit

SLOT = 3
PART = 4096


async def _open(disk: Path, *, inline: int = 0, compression: str = "none") -> LocalStore:
    store = LocalStore([disk], total_slots=16, part_size=PART, inline_max_bytes=inline,
                       read_cache_bytes=1 << 20, compression=compression)
    await store.open()
    return store


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _result(head: Head) -> dict[str, Any]:
    return {"generation": head.generation}


async def _write(store: LocalStore, path: str, data: bytes) -> StoredObject:
    content: Any = data if len(data) <= store.inline_max_bytes else _chunks(data)
    await store.write(SLOT, path, content, write_id="", clock=lambda: 2.0, precondition=None,
                      result_for=_result)
    obj = await store.get_object(SLOT, path)
    assert obj is not None
    return obj


def _file(obj: StoredObject, index: int) -> Path:
    local = obj.parts[index].local_path
    assert local is not None
    return obj.slot_dir / local


def _flip(file: Path, at: int) -> None:
    flip_bit(file, at * 8)


def _quarantined(disk: Path) -> list[Path]:
    return [p for p in (disk / QUARANTINE_DIR).rglob("*") if p.is_file()]


async def _read(store: LocalStore, path: str) -> bytes:
    obj = await store.get_object(SLOT, path)
    assert obj is not None
    return b"".join([c async for c in store.read_object(obj, 0, obj.head.size_bytes - 1)])


def _corrupt_inline(disk: Path, path: str) -> None:
    flip_inline_bit(group_file(disk, SLOT), 5 * 8 + 4, path=path)


async def _restore(store: LocalStore, obj: StoredObject, index: int, data: bytes) -> None:
    head = obj.head
    await store.restore_part(SLOT, head.path, head.generation, head.sha256, index,
                             _chunks(data))


async def test_checks_find_good_flipped_deleted_and_gone_parts(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    store = await _open(disk)
    data = os.urandom(3 * PART + 100)
    obj = await _write(store, "a/x", data)
    assert [await store.scrub_part(obj, p) for p in obj.parts] == [PartCheck.GOOD] * 4
    _flip(_file(obj, 1), 4000)
    os.unlink(_file(obj, 2))
    assert await store.scrub_part(obj, obj.parts[1]) is PartCheck.CORRUPT
    assert await store.scrub_part(obj, obj.parts[2]) is PartCheck.MISSING
    [evidence] = _quarantined(disk)
    assert evidence.name == _file(obj, 1).name and not _file(obj, 1).exists()
    # quarantined: now missing, and never read as good
    assert await store.scrub_part(obj, obj.parts[1]) is PartCheck.MISSING
    with pytest.raises(StorageCorrupt):
        await _read(store, "a/x")
    assert store.verify_stats.quarantined == 1
    # overwritten and collected: the old head's parts are gone, not missing
    await _write(store, "a/x", b"z" * 5000)
    assert await store.collect_garbage(cutoff=1e12) == 1
    assert await store.scrub_part(obj, obj.parts[0]) is PartCheck.GONE
    assert await store.scrub_part(obj, obj.parts[2]) is PartCheck.GONE


async def test_a_damaged_inline_part_is_quarantined_then_restored(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    store = await _open(disk, inline=1024)
    data = os.urandom(700)
    obj = await _write(store, "i/x", data)
    assert obj.parts[0].inline
    assert await store.scrub_part(obj, obj.parts[0]) is PartCheck.GOOD
    _corrupt_inline(disk, "i/x")
    assert await store.scrub_part(obj, obj.parts[0]) is PartCheck.CORRUPT
    assert len(_quarantined(disk)) == 1
    assert await store.scrub_part(obj, obj.parts[0]) is PartCheck.MISSING
    with pytest.raises(BadRequest):
        await _restore(store, obj, 0, data[:-1] + bytes([data[-1] ^ 1]))
    assert await store.scrub_part(obj, obj.parts[0]) is PartCheck.MISSING
    await _restore(store, obj, 0, data)
    assert await store.scrub_part(obj, obj.parts[0]) is PartCheck.GOOD
    assert await _read(store, "i/x") == data


@pytest.mark.parametrize("compression", ["none", "zstd"])
async def test_a_part_is_restored_in_place_and_read_again(tmp_path: Path,
                                                          compression: str) -> None:
    disk = tmp_path / "disk"
    store = await _open(disk, compression=compression)
    data = b"compressible " * 1000  # 13,000 bytes: 4 parts
    obj = await _write(store, "c/x", data)
    assert (obj.parts[1].compression is not None) == (compression == "zstd")
    assert await _read(store, "c/x") == data  # the read cache keeps its part rows
    _flip(_file(obj, 1), 10)
    with pytest.raises(StorageCorrupt):
        await _read(store, "c/x")
    others = {i: os.stat(_file(obj, i)).st_ino for i in (0, 2, 3)}
    await _restore(store, obj, 1, data[PART:2 * PART])
    assert await _read(store, "c/x") == data
    restored = await store.get_object(SLOT, "c/x")
    assert restored is not None and restored.parts[1].compression is None  # written plain
    assert {i: os.stat(_file(obj, i)).st_ino for i in (0, 2, 3)} == others  # untouched
    assert list(restoring_dir(disk).iterdir()) == []
    # restoring a part that is there and good changes nothing but its file
    await _restore(store, obj, 1, data[PART:2 * PART])
    assert await _read(store, "c/x") == data


async def test_restore_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    store = await _open(disk)
    data = os.urandom(2 * PART)
    obj = await _write(store, "r/x", data)
    os.unlink(_file(obj, 0))
    with pytest.raises(BadRequest):  # one byte too many
        await _restore(store, obj, 0, data[:PART] + b"x")
    with pytest.raises(BadRequest):  # too short
        await _restore(store, obj, 0, data[:PART - 1])
    with pytest.raises(PartMissing):  # a head not stored here
        await store.restore_part(SLOT, "r/x", obj.head.generation, "0" * 64, 0,
                                 _chunks(data[:PART]))
    with pytest.raises(PartMissing):  # a part it does not have
        await _restore(store, obj, 5, data[:PART])
    assert not _file(obj, 0).exists()
    assert list(restoring_dir(disk).iterdir()) == []


async def test_a_restore_cut_by_a_crash_leaves_nothing_after_a_restart(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    store = await _open(disk)
    obj = await _write(store, "k/x", os.urandom(PART))
    os.unlink(_file(obj, 0))

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 100  # the temp file exists by now
        await trio.sleep_forever()

    with trio.move_on_after(0.5):
        await store.restore_part(SLOT, "k/x", obj.head.generation, obj.head.sha256, 0,
                                 stalls())
    assert list(restoring_dir(disk).iterdir()) == []  # cancelled: discarded
    (restoring_dir(disk) / "left-by-a-crash").write_bytes(b"x")
    await store.close()
    store = await _open(disk)
    assert list(restoring_dir(disk).iterdir()) == []
    await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(sent=st.binary(max_size=2 * PART), index=st.integers(0, 2),
       chunk=st.integers(1, 5000))
async def test_any_other_bytes_are_refused_and_change_nothing(tmp_path_factory: Any,
                                                              sent: bytes, index: int,
                                                              chunk: int) -> None:
    disk = tmp_path_factory.mktemp("disk")
    store = await _open(disk, inline=0)
    data = bytes(range(256)) * 40  # 10,240 bytes: parts of 4096, 4096, 2048
    obj = await _write(store, "h/x", data)
    os.unlink(_file(obj, index))
    good = data[index * PART:(index + 1) * PART]
    head = obj.head
    try:
        await store.restore_part(SLOT, "h/x", head.generation, head.sha256, index,
                                 _chunks(sent, chunk))
    except BadRequest:
        assert sent != good
        assert not _file(obj, index).exists()
    else:
        assert sent == good
        assert _file(obj, index).read_bytes() == good
    assert list(restoring_dir(disk).iterdir()) == []
    await store.close()
