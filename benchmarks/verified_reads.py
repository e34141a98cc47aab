"""Read throughput with verified reads on, beside off (issue 8 items 1 and 10).

One `LocalStore` on a temp directory (the default part size, no read cache:
every read goes to the disk, where the check happens; a cache hit is never
re-checked, rfcs/0013), read from trio as the GET path reads it:
`read_small` for 4 KiB objects (one worker-thread call), `read_object` for a
64 MiB object (streamed part by part). The page cache is warm, so the figures
are the CPU cost of the check (sha256), not the disk's.

    python benchmarks/verified_reads.py [--small N] [--large N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from rimio.core.head import Head
from rimio.storage.store import LocalStore

SMALL = 4 * 1024
LARGE = 64 * 1024 * 1024
PART = 8 * 1024 * 1024  # the default part_size_bytes
SLOT = 1


def _result(head: Head) -> dict[str, Any]:
    return {}


async def _store(root: Path, verify: bool) -> LocalStore:
    store = LocalStore([root], total_slots=16, part_size=PART, read_cache_bytes=0,
                       inline_max_bytes=0, verify_reads=verify)
    await store.open()
    return store


async def _fill(root: Path, small: int) -> None:
    store = await _store(root, True)
    for i in range(small):
        await store.write(SLOT, f"s/{i}", os.urandom(SMALL), write_id="", clock=time.time,
                          precondition=None, result_for=_result)
    await store.write(SLOT, "l/x", os.urandom(LARGE), write_id="", clock=time.time,
                      precondition=None, result_for=_result)
    await store.close()


async def _small_reads(store: LocalStore, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        _, data = await store.read_small(SLOT, f"s/{i}", 1024 * 1024)
        assert data is not None and len(data) == SMALL
    return n / (time.perf_counter() - t0)


async def _large_reads(store: LocalStore, n: int) -> float:
    best = []
    for _ in range(n):
        obj = await store.get_object(SLOT, "l/x")
        assert obj is not None
        t0 = time.perf_counter()
        got = 0
        async for chunk in store.read_object(obj, 0, LARGE - 1):
            got += len(chunk)
        assert got == LARGE
        best.append(LARGE / (time.perf_counter() - t0) / 1e6)
    best.sort()
    return best[len(best) // 2]


async def _http(small: int, large: int) -> list[tuple[str, float, float]]:
    """The same through one real node's HTTP GET (LocalCluster, loopback,
    default storage settings but no read cache), the check switched on the
    node's store between runs."""
    import httpx

    from rimio.config import StorageConfig
    from rimio.testing import LocalCluster

    storage = StorageConfig(read_cache_bytes=0, gc_interval_seconds=3600.0)
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalCluster(Path(tmp), 1, transport="memory", storage=storage) as c, \
                httpx.AsyncClient(timeout=60) as client:
            [node] = c.nodes.values()
            url = f"{node.url}/api/v1/blobs"
            for i in range(small):
                await client.put(f"{url}/s/{i}", content=os.urandom(SMALL))
            await client.put(f"{url}/l/x", content=os.urandom(LARGE))
            best: dict[str, dict[bool, float]] = {"small": {}, "large": {}}
            for verify in (False, True, False, True):
                node.store.verify_reads = verify
                t0 = time.perf_counter()
                for i in range(small):
                    r = await client.get(f"{url}/s/{i}")
                    assert r.status_code == 200 and len(r.content) == SMALL
                rate = small / (time.perf_counter() - t0)
                best["small"][verify] = max(best["small"].get(verify, 0.0), rate)
                runs = []
                for _ in range(large):
                    t0 = time.perf_counter()
                    got = 0
                    async with client.stream("GET", f"{url}/l/x") as resp:
                        async for chunk in resp.aiter_raw():
                            got += len(chunk)
                    assert got == LARGE
                    runs.append(LARGE / (time.perf_counter() - t0) / 1e6)
                runs.sort()
                best["large"][verify] = max(best["large"].get(verify, 0.0),
                                            runs[len(runs) // 2])
    return [(f"4 KiB HTTP GET, 1 client, objects/s (best of 2 runs of {small})",
             best["small"][False], best["small"][True]),
            (f"64 MiB HTTP GET, 1 client, MB/s (median of {large}, best of 2 runs)",
             best["large"][False], best["large"][True])]


async def main(small: int, large: int) -> list[tuple[str, float, float]]:
    return [*await _store_reads(small, large), *await _http(small // 4, large)]


async def _store_reads(small: int, large: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "disk"
        await _fill(root, small)
        rows: dict[str, dict[bool, float]] = {"small": {}, "large": {}}
        for verify in (False, True, False, True):  # interleaved: load drifts
            store = await _store(root, verify)
            rows["small"].setdefault(verify, 0.0)
            rows["small"][verify] = max(rows["small"][verify], await _small_reads(store, small))
            rows["large"].setdefault(verify, 0.0)
            rows["large"][verify] = max(rows["large"][verify], await _large_reads(store, large))
            assert store.verify_stats.errors == 0
            await store.close()
    return [(f"4 KiB read_small, objects/s (best of 2 runs of {small})",
             rows["small"][False], rows["small"][True]),
            (f"64 MiB read_object, MB/s (median of {large}, best of 2 runs)",
             rows["large"][False], rows["large"][True])]


def _report(rows: list[tuple[str, float, float]]) -> str:
    lines = ["## Verified reads: read throughput, check off vs on", "",
             f"Generated by `python benchmarks/verified_reads.py` on a "
             f"{os.cpu_count()}-CPU machine ({platform.python_implementation()} "
             f"{platform.python_version()}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
             "Store rows: one LocalStore, warm page cache, no read cache, "
             "8 MiB parts, 4 KiB objects in part files. HTTP rows: one node (LocalCluster, "
             "loopback, httpx in the same process), default storage settings (4 KiB "
             "objects inline in SQLite) but no read cache (a cache hit is not checked "
             "again). The load average of the shared machine is in the footnote.", "",
             "| measurement | verify off | verify on | on / off |", "|---|---:|---:|---:|"]
    for name, off, on in rows:
        lines.append(f"| {name} | {off:,.0f} | {on:,.0f} | {on / off:.2f} |")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", f"Load average at the end: {load} (1 / 5 / 15 min) on a machine shared "
              "with other jobs: treat the ratios, not the absolute figures, as the result."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = _report(trio.run(main, args.small, args.large))
    print(text)
    if args.out is not None:
        args.out.write_text(text)
