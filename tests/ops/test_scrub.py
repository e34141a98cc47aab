"""The scrubber and the single-part re-fetch (rfcs/0017) over three real
LocalStores and the replica protocol: a flipped bit in a part file, a
deleted part file and a damaged inline row are all found within one pass,
quarantined, and that one part each is fetched again from a replica holding
the same head; with no good copy anywhere the part is counted as
refetch_failed and never served. The verified-read path re-fetches only the
bad part too (the whole object only from a replica too old to restore one).
The byte rate is checked on the pacer's arithmetic with a fake clock."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from rimio.core.errors import QuorumLost, StorageCorrupt
from rimio.core.head import Head
from rimio.core.quorum import SlotPlan
from rimio.core.replica import PartInfo, RestoreUnsupported
from rimio.core.scrub import PartCheck
from rimio.core.slots import slot_for_path
from rimio.ops.coordinator import Coordinator, CoordinatorSettings
from rimio.ops.scrub import Scrubber, ScrubSettings
from rimio.storage.meta import group_file
from rimio.storage.parts import PartRecord
from rimio.storage.replica import LocalReplica
from rimio.storage.store import LocalStore, StoredObject
from rimio.testing.damage import flip_bit

SLOTS = 16
PART = 4096
INLINE = 1024
NAMES = ("n0", "n1", "n2")
SETTINGS = CoordinatorSettings(inline_max_bytes=INLINE, part_size=PART,
                               max_object_bytes=1 << 24)


class Recording:
    """A LocalReplica that records the part reads, uploads and restores it serves."""

    def __init__(self, inner: LocalReplica, calls: list[tuple[str, ...]]) -> None:
        self._inner = inner
        self._calls = calls
        self.restore_unsupported = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read_part(self, head: Head, index: int, start: int, end: int) -> AsyncIterator[bytes]:
        self._calls.append(("read_part", self._inner.node_id, head.path, str(index)))
        return self._inner.read_part(head, index, start, end)

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes]) -> PartInfo:
        self._calls.append(("put_part", self._inner.node_id, path, str(index)))
        return await self._inner.put_part(slot, path, generation, index, chunks)

    async def restore_part(self, head: Head, index: int,
                           chunks: AsyncIterable[bytes]) -> PartInfo:
        self._calls.append(("restore_part", self._inner.node_id, head.path, str(index)))
        if self.restore_unsupported:
            raise RestoreUnsupported(f"{self._inner.node_id} is too old")
        return await self._inner.restore_part(head, index, chunks)


class Trio3:
    """Three stores, each a replica of every slot, and a coordinator on each."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.stores = {n: LocalStore([tmp_path / n], total_slots=SLOTS, part_size=PART,
                                     inline_max_bytes=INLINE, read_cache_bytes=0)
                       for n in NAMES}
        self.calls: list[tuple[str, ...]] = []
        self.replicas = {n: Recording(LocalReplica(s, n), self.calls)
                         for n, s in self.stores.items()}
        self.dead: set[str] = set()

    async def open(self) -> None:
        for store in self.stores.values():
            await store.open()

    def plan_for(self, slot: int) -> SlotPlan:
        return SlotPlan(slot=slot, targets=NAMES, holders=NAMES, write_quorum=2,
                        layout_version=1)

    def is_reachable(self, node: str) -> bool:
        return node not in self.dead

    def coordinator(self, node: str) -> Coordinator:
        return Coordinator(node, plan_for=self.plan_for,
                           replica_for=self.replicas.__getitem__,  # type: ignore[arg-type]
                           liveness=self, settings=SETTINGS, total_slots=SLOTS)

    def scrubber(self, node: str, **kw: Any) -> Scrubber:
        return Scrubber(self.coordinator(node).ctx, self.stores[node],
                        ScrubSettings(bytes_per_second=0), **kw)

    async def obj(self, node: str, path: str) -> StoredObject:
        obj = await self.stores[node].get_object(slot_for_path(path, SLOTS), path)
        assert obj is not None
        return obj

    async def file(self, node: str, path: str, index: int) -> Path:
        obj = await self.obj(node, path)
        local = obj.parts[index].local_path
        assert local is not None
        return obj.slot_dir / local

    async def read(self, node: str, path: str) -> bytes:
        """What a GET served by `node` alone returns."""
        obj = await self.obj(node, path)
        store = self.stores[node]
        return b"".join([c async for c in store.read_object(obj, 0, obj.head.size_bytes - 1)])

    def corrupt_inline(self, node: str, path: str) -> None:
        db = sqlite3.connect(group_file(self.tmp_path / node, slot_for_path(path, SLOTS)))
        try:
            row = db.execute("SELECT id, inline_data FROM file_entries WHERE path = ? AND "
                             "entry_kind = 'part' AND local_path IS NULL", (path,)).fetchone()
            data = bytearray(row[1])
            data[3] ^= 0x04
            db.execute("UPDATE file_entries SET inline_data = ? WHERE id = ?",
                       (bytes(data), row[0]))
            db.commit()
        finally:
            db.close()

    def of(self, kind: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == kind]


def _flip(file: Path, at: int) -> None:
    flip_bit(file, at * 8)


BIG = os.urandom(3 * PART + 77)
ONE = os.urandom(PART - 5)
SMALL = os.urandom(600)


async def _cluster(tmp_path: Path) -> Trio3:
    c = Trio3(tmp_path)
    await c.open()
    writer = c.coordinator("n0")
    for path, data in (("f/big", BIG), ("f/one", ONE), ("f/inline", SMALL)):
        outcome = await writer.put(slot_for_path(path, SLOTS), path, data)
        assert outcome.result is not None and outcome.result["committed_replicas"] >= 2
    c.calls.clear()
    return c


async def test_one_pass_finds_every_damage_and_fetches_only_the_bad_parts(
        tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    _flip(await c.file("n1", "f/big", 1), 100)
    os.unlink(await c.file("n1", "f/one", 0))
    c.corrupt_inline("n1", "f/inline")
    scrubber = c.scrubber("n1")
    await scrubber.scrub_pass()
    stats = scrubber.stats()
    assert stats["parts_checked"] == 4 + 1 + 1
    assert stats["bytes_checked"] == len(BIG) + len(ONE) + len(SMALL)
    assert (stats["corrupt"], stats["missing"], stats["refetched"], stats["refetch_failed"]) == (
        2, 1, 3, 0)
    assert stats["passes"] == 1 and stats["last_pass"] is not None
    # exactly the three lost parts were fetched, each read from one good replica
    assert sorted(c[2:] for c in c.of("restore_part")) == [
        ("f/big", "1"), ("f/inline", "0"), ("f/one", "0")]
    assert all(call[1] == "n1" for call in c.of("restore_part"))
    assert sorted(call[2:] for call in c.of("read_part")) == [
        ("f/big", "1"), ("f/inline", "0"), ("f/one", "0")]
    assert all(call[1] != "n1" for call in c.of("read_part"))
    assert c.of("put_part") == []
    # n1 alone serves the right bytes, and a second pass finds nothing wrong
    for path, data in (("f/big", BIG), ("f/one", ONE), ("f/inline", SMALL)):
        assert await c.read("n1", path) == data
    await scrubber.scrub_pass()
    stats = scrubber.stats()
    assert (stats["corrupt"], stats["missing"], stats["refetched"], stats["passes"]) == (
        2, 1, 3, 2)


async def test_with_no_good_copy_the_part_stays_quarantined_and_is_never_served(
        tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    for node in NAMES:
        _flip(await c.file(node, "f/big", 2), 9)
    scrubber = c.scrubber("n1")
    await scrubber.scrub_pass()
    stats = scrubber.stats()
    assert (stats["corrupt"], stats["refetched"], stats["refetch_failed"]) == (1, 0, 1)
    with pytest.raises(StorageCorrupt):
        await c.read("n1", "f/big")
    # the other replicas are asked, and their bad copies never travel
    assert c.of("restore_part") == [] or all(
        call[1] == "n1" for call in c.of("restore_part"))
    assert not (await c.file("n1", "f/big", 2)).exists()
    # a coordinated read refuses too (the other copies fail their check there)
    coord = c.coordinator("n0")
    obj, _ = await coord.open_read(slot_for_path("f/big", SLOTS), "f/big")
    got = bytearray()
    with pytest.raises((StorageCorrupt, QuorumLost)):
        async for chunk in coord.read(obj, 0, len(BIG) - 1):
            got += chunk
    assert bytes(got) == BIG[:len(got)] and len(got) < len(BIG)
    # a replica alone (R = 1): nothing to fetch from
    c.dead.update({"n0", "n2"})
    await scrubber.scrub_pass()
    assert scrubber.stats()["missing"] == 1 and scrubber.stats()["refetch_failed"] == 2


@pytest.mark.parametrize("too_old", [False, True], ids=["one-part", "whole-object"])
async def test_a_verified_read_fetches_only_the_bad_part_again(tmp_path: Path,
                                                               too_old: bool) -> None:
    c = await _cluster(tmp_path)
    file = await c.file("n1", "f/big", 2)
    good = file.read_bytes()
    _flip(file, 50)
    c.replicas["n1"].restore_unsupported = too_old
    coord = c.coordinator("n1")
    async with trio.open_nursery() as nursery:
        await nursery.start(coord.run)
        _, data = await coord.open_read(slot_for_path("f/big", SLOTS), "f/big",
                                          inline_up_to=1 << 20)
        assert data == BIG  # part 2 from another replica
        with trio.fail_after(10):
            while not (file.exists() and coord.repair.repaired):  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert file.read_bytes() == good and await c.read("n1", "f/big") == BIG
    assert coord.stats()["read_repair"]["refetched"] == 1
    assert [call[1:] for call in c.of("restore_part")] == [("n1", "f/big", "2")]
    if too_old:  # the whole object, part by part
        assert sorted(call[3] for call in c.of("put_part")) == ["0", "1", "2", "3"]
    else:
        assert c.of("put_part") == []


async def test_the_byte_rate_is_honoured(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    for i in range(6):  # more objects: 6 objects of 4 parts more
        path = f"g/{i}"
        await c.coordinator("n0").put(slot_for_path(path, SLOTS), path, BIG)
    now = 100.0
    slept: list[float] = []

    def clock() -> float:
        return now

    async def sleep(seconds: float) -> None:
        nonlocal now
        slept.append(seconds)
        now += seconds
        await trio.lowlevel.checkpoint()

    rate, burst = 10_000.0, 5_000.0
    scrubber = Scrubber(c.coordinator("n1").ctx, c.stores["n1"],
                        ScrubSettings(bytes_per_second=rate, burst_bytes=burst),
                        clock=clock, sleep=sleep)
    store = c.stores["n1"]
    reads: list[tuple[float, int]] = []
    check = store.scrub_part

    async def recorded(obj: StoredObject, part: PartRecord) -> PartCheck:
        reads.append((now, part.size_bytes))
        return await check(obj, part)

    store.scrub_part = recorded  # type: ignore[method-assign]
    await scrubber.scrub_pass()
    total = sum(n for _, n in reads)
    assert total == 7 * len(BIG) + len(ONE) + len(SMALL) == scrubber.stats()["bytes_checked"]
    # every read starts within the budget: the burst plus the rate times the time since
    done = 0
    for at, n in reads:
        done += n
        assert done <= burst + rate * (at - 100.0) + 1e-6
    # and the pass took no longer than the rate requires
    assert now - 100.0 == pytest.approx((total - burst) / rate)
    assert slept and all(s > 0 for s in slept)


async def test_an_interrupted_pass_resumes_where_it_stopped(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    for i in range(8):
        path = f"p/{i}"
        await c.coordinator("n0").put(slot_for_path(path, SLOTS), path, ONE)
    store = c.stores["n1"]
    everything: list[tuple[str, int]] = []
    check = store.scrub_part
    stop_at = 5

    async def recorded(obj: StoredObject, part: PartRecord) -> PartCheck:
        everything.append((obj.head.path, part.index))
        if len(everything) == stop_at:
            raise RuntimeError("the node stops here")
        return await check(obj, part)

    store.scrub_part = recorded  # type: ignore[method-assign]
    first = Scrubber(c.coordinator("n1").ctx, store,
                     ScrubSettings(bytes_per_second=0, batch=1))
    with pytest.raises(RuntimeError):
        await first.scrub_pass()
    position = await store.scrub_position()
    assert position is not None and first.stats()["passes"] == 0
    done_before = everything[:4]  # the fifth check broke off: it is checked again
    everything.clear()
    stop_at = -1
    second = Scrubber(c.coordinator("n1").ctx, store,
                      ScrubSettings(bytes_per_second=0, batch=1))
    await second.scrub_pass(position)
    assert await store.scrub_position() is None and second.stats()["passes"] == 1
    every_part = {("f/big", i) for i in range(4)} | {("f/one", 0), ("f/inline", 0)} | {
        (f"p/{i}", 0) for i in range(8)}
    assert set(done_before) | set(everything) == every_part
    assert len(everything) < len(every_part)  # it did not start over
    assert len(set(done_before) & set(everything)) <= 1  # at most the batch that broke off


async def test_a_position_file_that_does_not_parse_starts_a_new_pass(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    store = c.stores["n1"]
    file = tmp_path / "n1" / "scrub-position.json"
    for text in ("", "[1]", '{"slot": -1}', '{"slot": 99999}', '{"slot": 1, "after": 5}',
                 "\x80"):
        file.write_text(text)
        assert await store.scrub_position() is None, text
    await store.save_scrub_position((3, "a/b"))
    assert await store.scrub_position() == (3, "a/b")
    await store.save_scrub_position(None)
    assert not file.exists()


class _Stop(Exception):
    pass


async def test_the_loop_resumes_a_saved_pass_and_waits_out_the_interval(
        tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    store = c.stores["n1"]
    big_slot = slot_for_path("f/big", SLOTS)
    later = max(slot_for_path(p, SLOTS) for p in ("f/big", "f/one", "f/inline"))
    await store.save_scrub_position((later, None))  # a pass that stopped before `later`
    now = 0.0
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        nonlocal now
        waits.append(seconds)
        now += seconds
        if scrubber.stats()["passes"] == 2:
            raise _Stop
        await trio.lowlevel.checkpoint()

    scrubber = Scrubber(c.coordinator("n1").ctx, store,
                        ScrubSettings(bytes_per_second=1000.0, burst_bytes=1000.0,
                                      interval=3600.0),
                        clock=lambda: now, sleep=sleep, wall_clock=lambda: 1234.0)
    with pytest.raises(_Stop):
        await scrubber.run()
    stats = scrubber.stats()
    total = len(BIG) + len(ONE) + len(SMALL)
    # the first pass resumed at `later` (fewer bytes), the second checked everything
    first = stats["bytes_checked"] - total
    assert first < total and (big_slot == later) == (first >= len(BIG))
    assert stats["passes"] == 2 and stats["last_pass"] == 1234.0
    # each pass paced to the rate (the bucket full again after the long wait),
    # and between passes the rest of the interval: passes start an hour apart
    gaps = [i for i, w in enumerate(waits) if w > 100]
    assert len(gaps) == 2 and gaps[1] == len(waits) - 1
    assert sum(waits[:gaps[0]]) == pytest.approx((first - 1000.0) / 1000.0)
    assert sum(waits[gaps[0] + 1:gaps[1]]) == pytest.approx((total - 1000.0) / 1000.0)
    assert sum(waits[:gaps[0] + 1]) == pytest.approx(3600.0)
    assert now == pytest.approx(7200.0)
    assert await store.scrub_position() is None
