"""What a PUT costs the storage layer alone (no HTTP): syscalls, slot-database
opens, memory per open database, and the write rate inline vs part files.

    python benchmarks/storage_costs.py rate      # PUT/s per size, inline vs files
    python benchmarks/storage_costs.py syscalls  # fsync-family calls per PUT (needs strace)
    python benchmarks/storage_costs.py slots     # db opens/evictions per PUT, RSS, new vs overwrite
    python benchmarks/storage_costs.py cache     # GET/s of a hot 4 KiB object, read cache on/off
    python benchmarks/storage_costs.py compression  # PUT/GET MB/s of 64 MiB, zstd on/off

Figures from a run are recorded in rfcs/0008-inline-small-objects.md,
rfcs/0009-read-cache-and-compression.md and (slots) rfcs/0010-slot-groups.md.
"""

from __future__ import annotations

import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from rimio.core.slots import slot_for_path
from rimio.storage.store import DEFAULT_MAX_OPEN_SLOTS, LocalStore

PART = 8 * 1024 * 1024
SLOTS = 2048


def _store(root: Path, inline: int, max_open: int = SLOTS, slots: int = SLOTS,
           **kw: Any) -> LocalStore:
    return LocalStore([root], total_slots=slots, part_size=PART, inline_max_bytes=inline,
                      max_open_slots=max_open, **kw)


async def _put(store: LocalStore, path: str, data: bytes) -> None:
    await store.write(slot_for_path(path, store.total_slots), path, data, write_id="",
                      clock=time.time, precondition=None, result_for=lambda h: {})


async def _timed(n: int, job: Callable[[int], Awaitable[None]], clients: int = 8) -> float:
    start = time.perf_counter()

    async def client(c: int) -> None:
        for i in range(c, n, clients):
            await job(i)

    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(client, c)
    return n / (time.perf_counter() - start)


async def rate() -> None:
    print("size_kib mode new_per_s overwrite_per_s")
    for kib in (4, 16, 64, 128, 256):
        data = os.urandom(kib * 1024)
        for mode, inline in (("inline", 1024 * 1024), ("files", 0)):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
                store = _store(Path(tmp), inline, slots=64)
                await store.open()
                n = 400
                new = await _timed(n, lambda i, s=store, d=data: _put(s, f"o/{i}", d))
                over = await _timed(n, lambda i, s=store, d=data: _put(s, f"o/{i % 50}", d))
                await store.close()
            print(f"{kib} {mode} {new:.0f} {over:.0f}")


async def _scenario(name: str, root: Path, inline: int) -> None:
    """One measured phase between two markers strace can find (a failing access())."""
    store = _store(root, inline, slots=16)
    await store.open()
    small, large = os.urandom(4096), os.urandom(64 * 1024 * 1024)
    for slot in range(16):  # every slot database exists and is open
        await store.write(slot, "warm", small, write_id="", clock=time.time,
                          precondition=None, result_for=lambda h: {})
    await _put(store, "exists/x", small)
    n = 20 if name != "large" else 2
    os.access(f"/nonexistent-begin-{name}", os.F_OK)
    for i in range(n):
        if name == "new":
            await _put(store, f"new/{i}/obj", small)
        elif name == "overwrite":
            await _put(store, "exists/x", small)
        else:
            await _put(store, f"large/{i}", large)
    os.access(f"/nonexistent-end-{name}", os.F_OK)
    print(n)
    await store.close()


def syscalls() -> None:
    print("scenario mode fsync+fdatasync_per_put mkdir_per_put")
    for mode, inline in (("inline", 64 * 1024), ("files", 0)):
        for name in ("new", "overwrite", "large"):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
                out = subprocess.run(
                    ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,mkdir,access",
                     sys.executable, __file__, "_scenario", name, tmp, str(inline)],
                    capture_output=True, text=True, check=True)
            n = int(out.stdout.strip().splitlines()[-1])
            trace = out.stderr
            begin = trace.index(f"nonexistent-begin-{name}")
            end = trace.index(f"nonexistent-end-{name}")
            phase = trace[begin:end]
            syncs = len(re.findall(r"\b(?:fsync|fdatasync)\(", phase))
            mkdirs = len(re.findall(r"\bmkdir\(", phase))
            print(f"{name} {mode} {syncs / n:.2f} {mkdirs / n:.2f}")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def slots() -> None:
    """Metadata-database opens and evictions per PUT (2048 slots in 64 group
    databases), the RSS of a store with every group open, and the 4 KiB PUT
    rate to new paths vs overwrites on a fresh store."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for max_open in (DEFAULT_MAX_OPEN_SLOTS, 32):
            root = Path(tmp) / f"m{max_open}"
            store = _store(root, 64 * 1024, max_open=max_open)
            await store.open()
            rng = random.Random(1)
            paths = [f"bench/{rng.getrandbits(64):016x}" for _ in range(2000)]
            data = os.urandom(4096)
            before = store.slot_stats
            for p in paths:
                await _put(store, p, data)
            mid = store.slot_stats
            for p in rng.sample(paths, len(paths)):
                await _put(store, p, data)
            after = store.slot_stats
            print(f"max_open={max_open}: new paths: {(mid.opens - before.opens) / 2000:.3f} "
                  f"opens/PUT, {(mid.evictions - before.evictions) / 2000:.3f} evictions/PUT "
                  f"({mid.creations - before.creations} databases created); "
                  f"overwrites: {(after.opens - mid.opens) / 2000:.3f} opens/PUT, "
                  f"{(after.evictions - mid.evictions) / 2000:.3f} evictions/PUT")
            await store.close()
        # RSS with every group open and warm: every slot written once.
        root = Path(tmp) / "rss"
        store = _store(root, 64 * 1024)
        base = _rss_kib()
        await store.open()
        for slot in range(SLOTS):
            await store.write(slot, f"s{slot}", os.urandom(4096), write_id="", clock=time.time,
                              precondition=None, result_for=lambda h: {})
        grown = _rss_kib() - base
        n = store.slot_stats.open_now
        print(f"RSS with {n} group databases open ({SLOTS} slots written): {grown / 1024:.1f} MiB"
              f" ({grown / max(n, 1):.0f} KiB each); fds: {len(os.listdir('/proc/self/fd'))}; "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        await store.close()
        # The PUT rate of 4 KiB objects: new paths on a fresh store (the groups
        # are created on the way) vs overwrites of those paths.
        root = Path(tmp) / "rate"
        store = _store(root, 64 * 1024)
        await store.open()
        data = os.urandom(4096)
        n = 4000
        new = await _timed(n, lambda i: _put(store, f"r/{i}", data))
        over = await _timed(n, lambda i: _put(store, f"r/{(i * 7919) % n}", data))
        print(f"4 KiB PUT/s, {SLOTS} slots: new paths {new:.0f}, overwrites {over:.0f} "
              f"({store.slot_stats.creations} databases created)")
        await store.close()


async def cache() -> None:
    """GET of one hot 4 KiB object as the HTTP layer asks for it (head and
    bytes in one call), by 8 concurrent clients, read cache on and off."""
    print("stored_as cache gets_per_s hit_ratio")
    data = os.urandom(4096)
    for where, inline in (("inline", 64 * 1024), ("file", 0)):
        for label, cache_bytes in (("off", 0), ("on", 32 * 1024 * 1024)):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
                store = _store(Path(tmp), inline, slots=64, read_cache_bytes=cache_bytes)
                await store.open()
                await _put(store, "hot", data)
                slot = slot_for_path("hot", store.total_slots)

                async def get(i: int, s: LocalStore = store, slot: int = slot) -> None:
                    _, got = await s.read_small(slot, "hot", 1024 * 1024)
                    assert got is not None and len(got) == 4096

                await _timed(500, get)  # warm up
                per_s = await _timed(20000, get)
                stats = store.read_cache_stats
                ratio = stats.hits / max(1, stats.hits + stats.misses)
                await store.close()
            print(f"{where} {label} {per_s:.0f} {ratio:.3f}")


def _hex_text(n: int) -> bytes:
    """Hex digits of random bytes: about half its size in zstd, and hard work
    for it (no repeats, only the entropy coder gains)."""
    return os.urandom(n // 2).hex().encode()


def _log_lines(n: int) -> bytes:
    """JSON log lines with varying fields: the kind of data compression is for."""
    rng = random.Random(7)
    out = bytearray()
    i = 0
    while len(out) < n:
        out += (b'{"ts":%d,"level":"%s","msg":"request served","path":"/b/%08x","ms":%d}\n'
                % (1_700_000_000_000 + i, rng.choice((b"info", b"warn", b"debug")),
                   rng.getrandbits(32), rng.randrange(1000)))
        i += 1
    return bytes(out[:n])


async def compression() -> None:
    """PUT and GET of one 64 MiB object (in 1 MiB batches, as a streamed
    upload arrives and a download is sent), zstd on and off. Best of three."""
    size = 64 * 1024 * 1024
    print("data compression put_mb_s get_mb_s disk_mib")
    samples = (("logs", _log_lines(size)), ("hex", _hex_text(size)),
               ("random", os.urandom(size)))
    for kind, data in samples:
        for label, codec, level in (("none", "none", 3), ("zstd-3", "zstd", 3),
                                    ("zstd-1", "zstd", 1)):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
                store = _store(Path(tmp), 0, slots=4, compression=codec,
                               compression_level=level, read_cache_bytes=0)
                await store.open()
                slot = slot_for_path("big", store.total_slots)
                puts, gets = [], []
                for _ in range(3):
                    start = time.perf_counter()
                    await store.write(slot, "big", _batches(data), write_id="",
                                      clock=time.time, precondition=None,
                                      result_for=lambda h: {})
                    puts.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    obj = await store.get_object(slot, "big")
                    assert obj is not None
                    got = 0
                    async for chunk in store.read_object(obj, 0, size - 1):
                        got += len(chunk)
                    assert got == size
                    gets.append(time.perf_counter() - start)
                await store.collect_garbage(time.time() + 1)  # the older generations
                disk = _part_bytes(Path(tmp))
                await store.close()
            mib = size / 2**20
            print(f"{kind} {label} {mib / min(puts):.0f} {mib / min(gets):.0f} "
                  f"{disk / 2**20:.1f}")


def _part_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("part.*"))


async def _batches(data: bytes, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i:i + size])


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "rate":
        trio.run(rate)
    elif cmd == "syscalls":
        syscalls()
    elif cmd == "slots":
        trio.run(slots)
    elif cmd == "cache":
        trio.run(cache)
    elif cmd == "compression":
        trio.run(compression)
    elif cmd == "_scenario":
        trio.run(_scenario, sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
