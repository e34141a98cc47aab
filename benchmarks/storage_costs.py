"""What a PUT costs the storage layer alone (no HTTP): syscalls, slot-database
opens, memory per open database, and the write rate inline vs part files.

    python benchmarks/storage_costs.py rate      # PUT/s per size, inline vs files
    python benchmarks/storage_costs.py syscalls  # fsync-family calls per PUT (needs strace)
    python benchmarks/storage_costs.py slots     # db opens/evictions per PUT, RSS, new vs overwrite

Figures from a run are recorded in rfcs/0008-inline-small-objects.md and (slots)
rfcs/0010-slot-groups.md.
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from rimio.core.slots import slot_for_path
from rimio.storage.store import DEFAULT_MAX_OPEN_SLOTS, LocalStore

PART = 8 * 1024 * 1024
SLOTS = 2048


def _store(root: Path, inline: int, max_open: int = SLOTS, slots: int = SLOTS) -> LocalStore:
    return LocalStore([root], total_slots=slots, part_size=PART, inline_max_bytes=inline,
                      max_open_slots=max_open)


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


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "rate":
        trio.run(rate)
    elif cmd == "syscalls":
        syscalls()
    elif cmd == "slots":
        trio.run(slots)
    elif cmd == "_scenario":
        trio.run(_scenario, sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
