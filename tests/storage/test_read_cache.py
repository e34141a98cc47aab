"""The read cache of small hot objects: hits and misses, invalidation by
overwrite, delete and GC, never old bytes for a newer head, its bounds, and
use from many worker threads at once."""

import hashlib
import os
import random
import threading
from pathlib import Path
from typing import Any

import trio

from rimio.core.head import Head
from rimio.core.writes import CommitOutcome, WriteReport
from rimio.storage.cache import ENTRY_OVERHEAD, ReadCache
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


async def test_hit_and_miss(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(SMALL)
    await _write(store, 1, "hot", data)
    assert await _get(store, 1, "hot") == data  # miss: read from the part file, kept
    first = store.read_cache_stats
    assert (first.hits, first.misses, first.entries) == (0, 1, 1)
    for _ in range(3):
        assert await _get(store, 1, "hot") == data
    assert store.read_cache_stats.hits == 3
    # The head is still read from SQLite: a path that was never written is a miss of nothing.
    obj, none = await store.read_small(1, "cold", 1 << 20)
    assert obj is None and none is None
    # A read that does not want the bytes still gets the head's parts from the cache.
    obj, none = await store.read_small(1, "hot", -1)
    assert obj is not None and none is None and len(obj.parts) == 1
    out = bytearray()
    async for chunk in store.read_object(obj, 100, 199):
        out += chunk
    assert bytes(out) == data[100:200]
    await store.close()


async def test_inline_hit_carries_the_part_bytes(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    data = os.urandom(500)  # inline in the slot's row
    await _write(store, 2, "small", data)
    await _get(store, 2, "small")
    obj, got = await store.read_small(2, "small", 1 << 20)  # a hit
    assert store.read_cache_stats.hits == 1
    assert obj is not None and got == data and obj.parts[0].data == data
    await store.close()


async def test_overwrite_and_delete_are_never_served_old_bytes(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    old, new = os.urandom(SMALL), os.urandom(SMALL)
    await _write(store, 3, "p", old, now=1.0)
    assert await _get(store, 3, "p") == old
    await _write(store, 3, "p", new, now=2.0)
    assert store.read_cache_stats.entries == 0  # the write dropped the entry
    assert await _get(store, 3, "p") == new
    assert await _get(store, 3, "p") == new
    await _write(store, 3, "p", TOMBSTONE, now=3.0)
    assert await _get(store, 3, "p") is None
    assert store.read_cache_stats.entries == 0  # tombstones are not kept
    await store.close()


async def test_stale_entry_from_a_racing_read_is_not_served(tmp_path: Path) -> None:
    """A read that loaded generation 1 and fills the cache after the write of
    generation 2 dropped the entry leaves a stale entry: the head check, not
    the invalidation, keeps it from being served."""
    store = await _open(tmp_path)
    heads: list[Head] = []
    old, new = os.urandom(SMALL), os.urandom(SMALL)
    await _write(store, 4, "race", old, now=1.0, heads=heads)
    obj, _ = await store.read_small(4, "race", -1)
    assert obj is not None
    await _write(store, 4, "race", new, now=2.0, heads=heads)
    store.read_cache.put(4, heads[0], obj.parts, old)  # the late fill
    assert await _get(store, 4, "race") == new
    # That read replaced the stale entry with the current one.
    assert store.read_cache.get(4, heads[1]) is not None
    await store.close()


async def test_gc_drops_only_entries_of_collected_heads(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    heads: list[Head] = []
    await _write(store, 5, "a", os.urandom(SMALL), now=1.0, heads=heads)
    await _write(store, 5, "a", os.urandom(SMALL), now=2.0, heads=heads)
    await _write(store, 5, "b", os.urandom(SMALL), now=1.0, heads=heads)
    await _write(store, 5, "b", os.urandom(SMALL), now=2.0, heads=heads)
    a1, _, b1, _ = heads
    obj, _ = await store.read_small(5, "b", -1)
    assert obj is not None
    await _get(store, 5, "a")  # the current head of "a" is kept
    store.read_cache.put(5, b1, obj.parts, b"stale")  # a superseded head of "b" is kept
    assert store.read_cache_stats.entries == 2
    assert await store.collect_garbage(cutoff=10.0) == 2
    assert store.read_cache.get(5, b1) is None
    assert store.read_cache_stats.entries == 1  # "a" stays: its current head is untouched
    assert a1.generation == 1 and await _get(store, 5, "a") is not None
    await store.close()


async def test_bounds(tmp_path: Path) -> None:
    cost = SMALL + ENTRY_OVERHEAD
    store = await _open(tmp_path, read_cache_bytes=3 * cost, read_cache_max_object_bytes=SMALL)
    for i in range(5):
        await _write(store, 6, f"o{i}", os.urandom(SMALL))
        await _get(store, 6, f"o{i}")
    stats = store.read_cache_stats
    assert stats.entries == 3 and stats.bytes <= 3 * cost
    # Least recently used went first: o0 and o1 miss, o4 hits.
    hits = stats.hits
    await _get(store, 6, "o4")
    assert store.read_cache_stats.hits == hits + 1
    await _get(store, 6, "o0")
    assert store.read_cache_stats.hits == hits + 1
    # Larger than the per-object bound: never kept.
    await _write(store, 6, "big", os.urandom(SMALL + 1))
    await _get(store, 6, "big")
    await _get(store, 6, "big")
    assert store.read_cache_stats.hits == hits + 1
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
    cache = ReadCache(max_bytes=20 * (100 + ENTRY_OVERHEAD), max_object_bytes=100)
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
                roll = rng.random()
                if roll < 0.4:
                    cache.put(0, head, part, head.etag.encode()[:100].ljust(100, b"."))
                elif roll < 0.9:
                    hit = cache.get(0, head)
                    assert hit is None or hit.data.startswith(head.etag.encode()[:64])
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
    assert stats.bytes == stats.entries * (100 + ENTRY_OVERHEAD) <= cache.max_bytes
