"""Slotlet digests kept by storage (RFC 0014): after any sequence of local
writes, deletes, replica applies and slot drops, the digest storage keeps
equals the digest computed from scratch from the slot's current heads; a
version-4 database gains its digests when opened."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rimio.core.digest import SlotDigest, slotlet_of
from rimio.core.head import Head
from rimio.core.slots import slot_for_path
from rimio.storage.meta import group_file
from rimio.storage.replica import LocalReplica
from rimio.storage.store import TOMBSTONE, LocalStore

SLOTS = 4
PART = 4096


async def _open(root: Path) -> LocalStore:
    store = LocalStore([root / "disk0"], total_slots=SLOTS, part_size=PART, io_threads=2,
                       inline_max_bytes=1024)
    await store.open()
    return store


async def _put(store: LocalStore, path: str, data: bytes) -> None:
    await store.write(slot_for_path(path, SLOTS), path, data, write_id="", clock=lambda: 1.0,
                      precondition=None, result_for=lambda h: {})


async def _delete(store: LocalStore, path: str) -> None:
    await store.write(slot_for_path(path, SLOTS), path, TOMBSTONE, write_id="",
                      clock=lambda: 1.0, precondition=None, result_for=lambda h: {})


async def _from_scratch(store: LocalStore, slot: int) -> SlotDigest:
    heads = await store.slot_heads(slot, "", None, 1_000_000)
    return SlotDigest.of_heads((h.path, h.sha256) for h in heads)


async def _check(store: LocalStore) -> None:
    tops = await store.slot_tops()
    for slot in range(SLOTS):
        expected = await _from_scratch(store, slot)
        assert await store.slot_digest(slot) == expected
        assert tops.get(slot, bytes(16)) == expected.top()


ops = st.lists(st.tuples(st.sampled_from(["put", "put", "delete", "apply"]),
                         st.sampled_from([f"p/{i}" for i in range(8)]),
                         st.binary(max_size=2000)), max_size=25)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
async def test_kept_digest_equals_the_digest_of_the_current_heads(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, bytes]]) -> None:
    store = await _open(tmp_path_factory.mktemp("digests"))
    replica = LocalReplica(store, "n1", clock=lambda: 2.0)
    try:
        for kind, path, data in steps:
            if kind == "put":
                await _put(store, path, data)
            elif kind == "delete":
                await _delete(store, path)
            else:  # a replica applies a tombstone at a generation ahead
                head = await store.current_head(slot_for_path(path, SLOTS), path)
                generation = (head.generation if head is not None else 0) + 2
                tomb = Head("tombstone", path, slot_for_path(path, SLOTS), generation, "r",
                            timestamp=3.0)
                await replica.apply_head(tomb, (), None, None, 1)
        await _check(store)
    finally:
        await store.close()


async def test_heads_in_slotlets_answers_only_those(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        paths = [f"x/{i}" for i in range(40)]
        for p in paths:
            await _put(store, p, p.encode())
        slot = slot_for_path(paths[0], SLOTS)
        mine = [p for p in paths if slot_for_path(p, SLOTS) == slot]
        wanted = {slotlet_of(mine[0])}
        found = await store.heads_in_slotlets(slot, wanted)
        assert set(found) == {p for p in mine if slotlet_of(p) in wanted}
        head = (await store.slot_heads(slot, mine[0], None, 1))[0]
        assert found[mine[0]].sha256 == head.sha256 and not found[mine[0]].deleted
    finally:
        await store.close()


async def test_dropping_a_slot_empties_its_digest(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        await _put(store, "a", b"1")
        slot = slot_for_path("a", SLOTS)
        assert (await store.slot_digest(slot)) != SlotDigest.empty()
        await store.drop_slot(slot)
        assert (await store.slot_digest(slot)) == SlotDigest.empty()
        assert slot not in await store.slot_tops()
    finally:
        await store.close()


async def test_a_version_4_database_gains_its_digests(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        for i in range(30):
            await _put(store, f"m/{i}", hashlib.sha256(str(i).encode()).digest())
        await _delete(store, "m/3")
    finally:
        await store.close()
    for slot in range(SLOTS):  # back to what version 4 had
        db = sqlite3.connect(group_file(tmp_path / "disk0", slot))
        db.executescript("DROP TABLE IF EXISTS slotlets; PRAGMA user_version=4;")
        db.close()
    store = await _open(tmp_path)
    try:
        assert await store.slot_tops()
        await _check(store)
    finally:
        await store.close()
