"""Forgetting heads (RFC 0015): a purge forgets a tombstone only while it is
still the current head, named exactly; a re-sync forgets a head only if it
was installed before a given time; either way the kept digests equal the
digests from scratch and the forgotten head's files are gone."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rimio.core.digest import HeadKey, SlotDigest
from rimio.core.slots import slot_for_path
from rimio.storage.store import TOMBSTONE, LocalStore

SLOTS = 4
PART = 4096


async def _open(root: Path) -> LocalStore:
    store = LocalStore([root / "disk0"], total_slots=SLOTS, part_size=PART, io_threads=2,
                       inline_max_bytes=1024)
    await store.open()
    return store


async def _write(store: LocalStore, path: str, data: object, at: float) -> HeadKey:
    slot = slot_for_path(path, SLOTS)
    await store.write(slot, path, data, write_id="", clock=lambda: at,  # type: ignore[arg-type]
                      precondition=None, result_for=lambda h: {})
    head = await store.current_head(slot, path)
    assert head is not None
    return HeadKey(head.generation, head.deleted, head.sha256)


async def _check_digest(store: LocalStore, slot: int) -> None:
    heads = await store.slot_heads(slot, "", None, 1_000_000)
    expected = SlotDigest.of_heads((h.path, h.sha256) for h in heads)
    assert await store.slot_digest(slot) == expected
    assert (await store.slot_tops()).get(slot, bytes(16)) == expected.top()


def _part_files(root: Path) -> list[Path]:
    return [p for p in (root / "disk0").rglob("part.*") if p.is_file()]


async def test_old_tombstones_are_listed_by_when_they_were_installed(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        await _write(store, "a", b"x" * 10, 1.0)
        early = await _write(store, "a", TOMBSTONE, 100.0)
        await _write(store, "b", TOMBSTONE, 300.0)
        slot_a = slot_for_path("a", SLOTS)
        assert await store.old_tombstones(slot_a, 200.0, 10) == {"a": early}
        assert await store.old_tombstones(slot_a, 50.0, 10) == {}
    finally:
        await store.close()


async def test_a_purge_forgets_only_a_current_tombstone_named_exactly(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        await _write(store, "gone", b"x" * 5000, 1.0)  # one part file
        tomb = await _write(store, "gone", TOMBSTONE, 2.0)
        live = await _write(store, "live", b"y" * 10, 3.0)
        slot = slot_for_path("gone", SLOTS)
        live_slot = slot_for_path("live", SLOTS)
        # a meta is never purged; a tombstone named with another hash is not either
        assert await store.forget_heads(live_slot, {"live": live}, tombstones_only=True) == set()
        other = HeadKey(tomb.generation, True, "0" * 64)
        assert await store.forget_heads(slot, {"gone": other}, tombstones_only=True) == set()
        assert await store.heads_held(slot, {"gone": tomb, "live": live}) == {"gone"}

        assert await store.forget_heads(slot, {"gone": tomb}, tombstones_only=True) == {"gone"}
        assert await store.current_head(slot, "gone") is None
        assert await store.current_head(live_slot, "live") is not None
        await _check_digest(store, slot)
        await _check_digest(store, live_slot)
        # purging again changes nothing
        assert await store.forget_heads(slot, {"gone": tomb}, tombstones_only=True) == set()
    finally:
        await store.close()


async def test_a_resync_forgets_a_head_only_if_installed_before(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        data = hashlib.sha256(b"z").digest() * 300  # 9600 bytes: three part files
        old = await _write(store, "old", data, 10.0)
        new = await _write(store, "new", b"n" * 10, 50.0)
        assert len(_part_files(tmp_path)) == 3
        slot_old, slot_new = slot_for_path("old", SLOTS), slot_for_path("new", SLOTS)
        assert await store.forget_heads(slot_new, {"new": new}, tombstones_only=False,
                                        installed_before=40.0) == set()
        assert await store.forget_heads(slot_old, {"old": old}, tombstones_only=False,
                                        installed_before=40.0) == {"old"}
        assert await store.current_head(slot_old, "old") is None
        assert _part_files(tmp_path) == []
        await _check_digest(store, slot_old)
        await _check_digest(store, slot_new)
    finally:
        await store.close()
