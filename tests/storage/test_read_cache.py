"""The read cache of current heads and small objects' bytes: filled by
writes and by misses, never an older head after a newer one was
acknowledged (fills that a write overtook, reads racing writes), GC, its
bounds, and use from many threads at once."""

import hashlib
import os
import random
import threading
from pathlib import Path
from typing import Any

import trio

from rimio.core.head import Head
from rimio.core.writes import CommitOutcome, Precondition, WriteReport
from rimio.storage.cache import ENTRY_OVERHEAD, PART_OVERHEAD, ReadCache
from rimio.storage.parts import PartRecord
from rimio.storage.store import LocalStore
from rimio.storage.writes import TOMBSTONE

PART = 64 * 1024
SMALL = 4096


async def _open(root: Path, **kw: Any) -> LocalStore:
    kw.setdefault("inline_max_bytes", 1000)
    store = LocalStore([root], total_slots=16, part_size=PART, io_threads=4, **kw)
    await store.open()
    return store


async def _write(store: LocalStore, slot: int, path: str, content: Any, now: float = 1.0,
                 heads: list[Head] | None = None) -> WriteReport:
    def result_for(head: Head) -> dict[str, Any]:
        if heads is not None:
            heads.append(head)
        return {"generation": head.generation}

    return await store.write(slot, path, content, write_id="", clock=lambda: now,
                             precondition=None, result_for=result_for)


async def _get(store: LocalStore, slot: int, path: str) -> bytes | None:
    obj, data = await store.read_small(slot, path, 1 << 20)
    assert obj is not None
    if obj.head.deleted:
        return None
    assert data is not None and hashlib.sha256(data).hexdigest() == obj.head.etag
    return data


async def test_a_write_fills_the_cache_and_reads_hit(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(SMALL)
    await _write(store, 1, "hot", data)
    assert store.read_cache_stats.entries == 1  # the write kept its head and bytes
    for _ in range(3):
        assert await _get(store, 1, "hot") == data
    stats = store.read_cache_stats
    assert (stats.hits, stats.misses) == (3, 0)
    # A path that was never written: a miss, read from SQLite, nothing kept.
    obj, none = await store.read_small(1, "cold", 1 << 20)
    assert obj is None and none is None
    assert store.read_cache_stats.entries == 1
    # A read that does not want the bytes gets the head's parts from the cache.
    obj, none = await store.read_small(1, "hot", -1)
    assert obj is not None and none is None and len(obj.parts) == 1
    out = bytearray()
    async for chunk in store.read_object(obj, 100, 199):
        out += chunk
    assert bytes(out) == data[100:200]
    await store.close()


async def test_a_miss_fills_the_cache(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(SMALL)
    await _write(store, 1, "hot", data)
    store.read_cache.clear()  # as after a restart
    assert await _get(store, 1, "hot") == data
    assert await _get(store, 1, "hot") == data
    stats = store.read_cache_stats
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)
    await store.close()


async def test_inline_hit_carries_the_part_bytes(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(500)  # inline in the slot's row
    await _write(store, 2, "small", data)
    obj, got = await store.read_small(2, "small", 1 << 20)  # a hit
    assert store.read_cache_stats.hits == 1
    assert obj is not None and got == data and obj.parts[0].data == data
    assert obj.parts[0].inline
    await store.close()


async def test_overwrite_and_delete_are_never_served_old_bytes(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    old, new = os.urandom(SMALL), os.urandom(SMALL)
    await _write(store, 3, "p", old, now=1.0)
    assert await _get(store, 3, "p") == old
    await _write(store, 3, "p", new, now=2.0)
    assert await _get(store, 3, "p") == new
    await _write(store, 3, "p", TOMBSTONE, now=3.0)
    assert await _get(store, 3, "p") is None  # the tombstone's head, from the cache
    hits = store.read_cache_stats.hits
    assert hits == 3
    await store.close()


async def test_a_write_that_applies_nothing_leaves_the_current_head(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(SMALL)
    await _write(store, 3, "p", data)
    refused = await store.write(3, "p", b"other", write_id="", clock=lambda: 2.0,
                                precondition=Precondition(if_none_match_any=True),
                                result_for=lambda h: {})
    assert refused.outcome is CommitOutcome.PRECONDITION_FAILED
    assert await _get(store, 3, "p") == data
    await store.close()


async def test_a_fill_that_a_write_overtook_is_not_kept(tmp_path: Path) -> None:
    """A read that loaded generation 1 and fills the cache after the write
    of generation 2 began must not put generation 1 back."""
    store = await _open(tmp_path)
    heads: list[Head] = []
    old, new = os.urandom(SMALL), os.urandom(SMALL)
    await _write(store, 4, "race", old, now=1.0, heads=heads)
    store.read_cache.clear()
    fill = store.read_cache.begin_fill(4, "race")  # the read starts, reads gen 1 ...
    assert fill is not None
    await _write(store, 4, "race", new, now=2.0, heads=heads)  # ... gen 2 commits ...
    store.read_cache.finish_fill(fill, heads[0], (), old)  # ... and the late fill arrives
    assert await _get(store, 4, "race") == new
    # No fill while a write of the path is in flight.
    with store.read_cache.writing(4, "race"):
        assert store.read_cache.begin_fill(4, "race") is None
    assert store.read_cache.begin_fill(4, "race") is not None
    await store.close()


async def test_reads_racing_writes_never_go_back(tmp_path: Path) -> None:
    """Writers overwrite a few hot paths while readers read them, from the
    cache and from SQLite: once a write was acknowledged, no read that began
    after it returns an older generation, and every read's bytes are those
    of the head it returned."""
    store = await _open(tmp_path, read_cache_bytes=6 * (SMALL + ENTRY_OVERHEAD + 200))
    paths = [f"h{i}" for i in range(4)]
    acked = dict.fromkeys(paths, 0)
    clock = iter(range(1, 1_000_000))
    for p in paths:
        report = await _write(store, 9, p, os.urandom(SMALL), now=float(next(clock)))
        assert report.result is not None
        acked[p] = report.result["generation"]

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            p = rng.choice(paths)
            content: Any = TOMBSTONE if rng.random() < 0.1 else os.urandom(
                rng.choice([100, SMALL]))
            report = await _write(store, 9, p, content, now=float(next(clock)))
            assert report.result is not None
            acked[p] = max(acked[p], report.result["generation"])
            if rng.random() < 0.2:
                store.read_cache.clear()  # misses too: fills race the writes

    async def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(400):
            p = rng.choice(paths)
            floor = acked[p]
            obj, data = await store.read_small(9, p, 1 << 20)
            assert obj is not None and obj.head.generation >= floor, (p, floor)
            if not obj.head.deleted:
                assert data is not None and hashlib.sha256(data).hexdigest() == obj.head.etag
            if rng.random() < 0.3:
                await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(writer, i)
        for i in range(6):
            nursery.start_soon(reader, 100 + i)
    stats = store.read_cache_stats
    assert stats.hits > 0 and stats.misses > 0
    for p in paths:  # at rest, the cache holds what SQLite holds
        obj, _ = await store.read_small(9, p, 1 << 20)
        current = await store.current_head(9, p)
        assert obj is not None and current is not None and obj.head == current
    await store.close()


async def test_gc_keeps_the_current_heads(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    await _write(store, 5, "a", os.urandom(SMALL), now=1.0)
    a2 = os.urandom(SMALL)
    await _write(store, 5, "a", a2, now=2.0)
    assert store.read_cache_stats.entries == 1
    assert await store.collect_garbage(cutoff=10.0) == 1
    assert store.read_cache_stats.entries == 1  # only the superseded head went
    assert await _get(store, 5, "a") == a2
    await store.close()


async def test_bounds(tmp_path: Path) -> None:
    cost = SMALL + ENTRY_OVERHEAD + PART_OVERHEAD
    store = await _open(tmp_path, read_cache_bytes=3 * cost, read_cache_max_object_bytes=SMALL)
    for i in range(5):
        await _write(store, 6, f"o{i}", os.urandom(SMALL))
    stats = store.read_cache_stats
    assert stats.entries == 3 and stats.bytes <= 3 * cost
    # Least recently used went first: o0 and o1 miss, o4 hits.
    hits = stats.hits
    await _get(store, 6, "o4")
    assert store.read_cache_stats.hits == hits + 1
    await _get(store, 6, "o0")
    assert store.read_cache_stats.hits == hits + 1
    # Larger than the per-object bound: its head is kept, never its bytes,
    # so a read that wants them misses and one that does not hits.
    await _write(store, 6, "big", os.urandom(SMALL + 1))
    await _get(store, 6, "big")
    await _get(store, 6, "big")
    assert store.read_cache_stats.hits == hits + 1
    obj, none = await store.read_small(6, "big", -1)
    assert obj is not None and none is None
    assert store.read_cache_stats.hits == hits + 2
    assert store.read_cache_stats.bytes <= 3 * cost
    await store.close()


async def test_zero_turns_the_cache_off(tmp_path: Path) -> None:
    store = await _open(tmp_path, read_cache_bytes=0)
    await _write(store, 7, "x", b"abc")
    for _ in range(3):
        assert await _get(store, 7, "x") == b"abc"
    stats = store.read_cache_stats
    assert (stats.hits, stats.misses, stats.entries) == (0, 0, 0)
    await store.close()


async def test_reads_and_writes_from_many_threads(tmp_path: Path) -> None:
    """Readers on worker threads while writers overwrite and delete: every
    read sees the bytes of the head it was given (etag checked in `_get`)."""
    store = await _open(tmp_path, read_cache_bytes=8 * (SMALL + ENTRY_OVERHEAD))
    paths = [f"k{i}" for i in range(12)]
    for p in paths:
        await _write(store, 8, p, os.urandom(SMALL))
    clock = iter(range(2, 1_000_000))

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            content: Any = TOMBSTONE if rng.random() < 0.1 else os.urandom(rng.choice(
                [100, SMALL, SMALL * 2]))
            report = await _write(store, 8, rng.choice(paths), content, now=float(next(clock)))
            assert report.outcome in (CommitOutcome.APPLIED, CommitOutcome.SUPERSEDED)

    async def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            await _get(store, 8, rng.choice(paths))

    async with trio.open_nursery() as nursery:
        for i in range(2):
            nursery.start_soon(writer, i)
        for i in range(6):
            nursery.start_soon(reader, 100 + i)
    stats = store.read_cache_stats
    assert stats.hits > 0 and stats.bytes <= store.read_cache.max_bytes
    await store.close()


def test_cache_accounting_under_threads() -> None:
    cache = ReadCache(max_bytes=20 * (100 + ENTRY_OVERHEAD + PART_OVERHEAD),
                      max_object_bytes=100)
    heads = [Head(kind="meta", path=f"p{i}", slot_id=0, generation=g, write_id="",
                  size_bytes=100, etag=f"{i:064x}", part_size=PART, part_count=1, timestamp=1.0)
             for i in range(40) for g in (1, 2)]
    part = (PartRecord(0, "0" * 64, 100, "x"),)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                head = rng.choice(heads)
                body = head.etag.encode()[:100].ljust(100, b".")
                roll = rng.random()
                if roll < 0.3:
                    with cache.writing(0, head.path):
                        cache.committed(0, head.path, head, part, body)
                elif roll < 0.5:
                    fill = cache.begin_fill(0, head.path)
                    cache.finish_fill(fill, head, part, body)
                elif roll < 0.9:
                    hit = cache.lookup(0, head.path, 1 << 20)
                    assert hit is None or (hit.data is not None and hit.data.startswith(
                        hit.head.etag.encode()[:64]))
                else:
                    cache.invalidate(0, head.path)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats.bytes == stats.entries * (100 + ENTRY_OVERHEAD + PART_OVERHEAD)
    assert stats.bytes <= cache.max_bytes
