"""The scrub's costs (rfcs/0017, issue 8 item 7).

1. How fast an unpaced pass checks stored parts (`Scrubber.scrub_pass` with
   no byte rate) on one `LocalStore`: large objects (8 MiB part files) and
   small ones (4 KiB, inline in their rows). The page cache is warm, so the
   figures are the CPU cost (sha256, SQLite), the ceiling under any
   `repair.scrub_bytes_per_second`.
2. Healing one bad part of a 64 MiB object between two LocalStores through
   the replica protocol: the single-part restore against the whole-object
   repair it replaces (time and bytes read from the good replica).

    python benchmarks/bench_scrub.py [--large-mib N] [--small N]
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
from rimio.core.quorum import SlotPlan
from rimio.core.slots import slot_for_path
from rimio.ops.coordination import Coordination, CoordinatorSettings
from rimio.ops.part_restore import restore_one_part
from rimio.ops.quorum_read import CoordinatedObject
from rimio.ops.read_repair import repair_replica
from rimio.ops.scrub import Scrubber, ScrubSettings
from rimio.storage.replica import LocalReplica
from rimio.storage.store import LocalStore

PART = 8 * 1024 * 1024
SLOTS = 16


def _result(head: Head) -> dict[str, Any]:
    return {}


async def _chunks(data: bytes) -> Any:
    for i in range(0, len(data), 1 << 20):
        yield data[i:i + (1 << 20)]


class _Everyone:
    def is_reachable(self, node: str) -> bool:
        return True


def _ctx(replicas: dict[str, LocalReplica], me: str) -> Coordination:
    names = tuple(replicas)
    settings = CoordinatorSettings(inline_max_bytes=64 * 1024, part_size=PART,
                                   max_object_bytes=1 << 40)
    return Coordination(me, lambda s: SlotPlan(s, names, names, 1, 1),
                        replicas.__getitem__, _Everyone(), settings)  # type: ignore[arg-type]


async def _pass(root: Path, large_mib: int, small: int) -> None:
    store = LocalStore([root / "a"], total_slots=SLOTS, part_size=PART, read_cache_bytes=0)
    await store.open()
    data = os.urandom(PART)
    for i in range(large_mib // 8):
        path = f"big/{i}"
        await store.write(slot_for_path(path, SLOTS), path, _chunks(data), write_id="",
                          clock=time.time, precondition=None, result_for=_result)
    for i in range(small):
        path = f"small/{i}"
        await store.write(slot_for_path(path, SLOTS), path, os.urandom(4096), write_id="",
                          clock=time.time, precondition=None, result_for=_result)
    ctx = _ctx({"a": LocalReplica(store, "a")}, "a")
    scrubber = Scrubber(ctx, store, ScrubSettings(bytes_per_second=0))
    started = time.perf_counter()
    await scrubber.scrub_pass()
    took = time.perf_counter() - started
    stats = scrubber.stats()
    print(f"pass: {stats['parts_checked']} parts, {stats['bytes_checked'] / 2**20:.0f} MiB "
          f"in {took:.2f} s = {stats['bytes_checked'] / 2**20 / took:.0f} MiB/s, "
          f"{stats['parts_checked'] / took:.0f} parts/s")
    await store.close()


async def _heal(root: Path) -> None:
    stores = {n: LocalStore([root / f"h{n}"], total_slots=SLOTS, part_size=PART,
                            read_cache_bytes=0) for n in ("good", "bad")}
    for s in stores.values():
        await s.open()
    replicas = {n: LocalReplica(s, n) for n, s in stores.items()}
    data = os.urandom(8 * PART)
    for s in stores.values():
        await s.write(slot_for_path("obj", SLOTS), "obj", data, write_id="", clock=lambda: 1.0,
                      precondition=None, result_for=_result)
    obj = await stores["bad"].get_object(slot_for_path("obj", SLOTS), "obj")
    assert obj is not None
    ctx = _ctx(replicas, "bad")
    for name, heal in (("one part", lambda: restore_one_part(ctx, "bad", obj.head, 3,
                                                            ("good",))),
                       ("whole object", lambda: repair_replica(
                           ctx, "bad", CoordinatedObject(obj.head, ("good",), False)))):
        local = obj.parts[3].local_path
        assert local is not None
        os.unlink(obj.slot_dir / local)
        before = stores["good"].verify_stats.verified_parts
        started = time.perf_counter()
        await heal()
        took = time.perf_counter() - started
        read = stores["good"].verify_stats.verified_parts - before
        assert (obj.slot_dir / local).exists()
        print(f"heal one lost 8 MiB part of a 64 MiB object, {name}: {took * 1000:.0f} ms, "
              f"{read} parts read from the good replica")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--small", type=int, default=5000)
    args = parser.parse_args()
    print(f"{platform.node()} {platform.python_version()} {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory() as tmp:
        await _pass(Path(tmp), args.large_mib, 0)
        await _pass(Path(tmp) / "s", 0, args.small)
        await _heal(Path(tmp))


if __name__ == "__main__":
    trio.run(main)
