"""Anti-entropy cost (RFC 0014; issue 8 item 10): the bytes and time of one
digest exchange between replicas that hold N objects and differ in D, against
shipping every head; and the time and CPU of a round over identical replicas.

Three real `LocalStore`s (on /dev/shm when present) are filled with the same N
small objects, each head applied to every replica as a coordinator's write
would be; then D paths diverge on the third (half missing, half one
generation behind). The third replica's `AntiEntropy.sync_peer` runs against
the first through a replica wrapper that sends every digest question and
answer through its msgpack encoding (`rimio.core.digest_wire`) and counts the
bytes: what the round would put on the wire, HTTP headers aside. The
baseline is the JSON listing of every head (what the replica protocol's
`GET heads` ships), as a naive repair would exchange.

    python benchmarks/bench_digest.py [--objects N] [--differ D] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from rimio.core import digest_wire as w
from rimio.core.digest import HeadKey
from rimio.core.head import Head
from rimio.core.layout import Layout
from rimio.core.quorum import SlotPlan
from rimio.core.slots import slot_for_path
from rimio.ops.antientropy import AntiEntropy, AntiEntropySettings
from rimio.ops.coordination import Coordination
from rimio.ops.coordinator import CoordinatorSettings
from rimio.storage.replica import LocalReplica
from rimio.storage.store import LocalStore

SLOTS = 2048
NODES = ("a", "b", "c")


class Counting:
    """A replica whose digest questions and answers go through their wire
    encoding, counted; everything else passes through."""

    def __init__(self, inner: LocalReplica) -> None:
        self._inner = inner
        self.bytes = 0
        self.questions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _ask(self, q: w.DigestQuestion, answer: bytes) -> bytes:
        self.questions += 1
        self.bytes += len(w.encode_question(q)) + len(answer)
        return answer

    async def digest_tops(self) -> dict[int, bytes]:
        data = self._ask(w.DigestQuestion("tops"),
                         w.encode_tops(await self._inner.digest_tops()))
        return w.decode_tops(data, total_slots=SLOTS)

    async def digest_groups(self, slot: int) -> tuple[bytes, ...]:
        data = self._ask(w.DigestQuestion("groups", slot),
                         w.encode_groups(await self._inner.digest_groups(slot)))
        return w.decode_groups(data)

    async def digest_slotlets(self, slot: int, groups: Sequence[int]) -> dict[int, bytes]:
        data = self._ask(w.DigestQuestion("slotlets", slot, tuple(groups)),
                         w.encode_slotlets(await self._inner.digest_slotlets(slot, groups)))
        return w.decode_slotlets(data)

    async def slotlet_heads(self, slot: int, slotlets: Sequence[int]) -> dict[str, HeadKey]:
        data = self._ask(w.DigestQuestion("heads", slot, tuple(slotlets)),
                         w.encode_heads(await self._inner.slotlet_heads(slot, slotlets)))
        return w.decode_heads(data)


class Always:
    def is_reachable(self, node_id: str) -> bool:
        return True


class LayoutView:
    def __init__(self, layout: Layout) -> None:
        self.current = layout


def _head(path: str, generation: int, data: bytes) -> Head:
    return Head("meta", path, slot_for_path(path, SLOTS), generation, f"w{generation}",
                size_bytes=len(data), etag=hashlib.sha256(data).hexdigest(),
                part_size=1 << 20, part_count=1, timestamp=1.0)


def _data(i: int, generation: int) -> bytes:
    return hashlib.sha256(f"{i}:{generation}".encode()).digest() * 3  # 96 bytes


async def _fill(replicas: dict[str, LocalReplica], n: int, differ: int) -> None:
    lagging = set(range(0, n, n // differ))  # D paths spread over the slots
    missing = set(sorted(lagging)[: differ // 2])
    for i in range(n):
        path = f"obj/{i:07d}"
        first = _data(i, 1)
        for name, replica in replicas.items():
            if name == "c" and i in missing:
                continue
            await replica.apply_head(_head(path, 1, first), (), first, None, 1)
        if i in lagging and i not in missing:  # a newer write c missed
            second = _data(i, 2)
            for name in ("a", "b"):
                await replicas[name].apply_head(_head(path, 2, second), (), second, None, 1)


async def _heads(replica: LocalReplica) -> dict[str, str]:
    return {h.path: h.sha256 for h in await replica.list_heads(None, "", None, 10_000_000)}


async def run(n: int, differ: int, root: Path) -> dict[str, Any]:
    stores = {name: LocalStore([root / name], total_slots=SLOTS, part_size=1 << 20,
                               inline_max_bytes=64 * 1024, inline_io=True) for name in NODES}
    for store in stores.values():
        await store.open()
    try:
        replicas = {name: LocalReplica(stores[name], name, clock=lambda: 2.0) for name in NODES}
        t0 = time.perf_counter()
        await _fill(replicas, n, differ)
        fill_seconds = time.perf_counter() - t0
        counting = {name: Counting(r) for name, r in replicas.items()}
        layout = Layout.founding({x: f"{x}:1" for x in NODES}, total_slots=SLOTS, replicas=3,
                                 write_quorum=None)

        def plan_for(slot: int) -> SlotPlan:
            return layout.plan(slot)

        ctx = Coordination(node_id="c", plan_for=plan_for,
                           replica_for=counting.__getitem__,  # type: ignore[arg-type]
                           liveness=Always(), settings=CoordinatorSettings(
                               inline_max_bytes=64 * 1024, part_size=1 << 20,
                               max_object_bytes=1 << 30),
                           total_slots=SLOTS)
        ae = AntiEntropy(ctx, LayoutView(layout), counting["c"],  # type: ignore[arg-type]
                         AntiEntropySettings(bytes_per_second=1e12, burst_bytes=1e12),
                         clock=time.perf_counter)
        everything = json.dumps({"heads": [h.to_dict() for h in await replicas["a"].list_heads(
            None, "", None, 10_000_000)]}).encode()
        assert await _heads(replicas["c"]) != await _heads(replicas["a"])

        def digest_bytes() -> int:
            return counting["a"].bytes + counting["c"].bytes

        wall, cpu = time.perf_counter(), time.process_time()
        assert (await ae.sync_peer("a")).repaired
        round_wall, round_cpu = time.perf_counter() - wall, time.process_time() - cpu
        exchanged = digest_bytes()
        assert await _heads(replicas["c"]) == await _heads(replicas["a"]), "did not converge"
        repaired = ae.stats.heads_pulled + ae.stats.heads_pushed
        questions = counting["a"].questions + counting["c"].questions

        before = digest_bytes()
        wall, cpu = time.perf_counter(), time.process_time()
        assert (await ae.sync_peer("a")).repaired
        idle_wall, idle_cpu = time.perf_counter() - wall, time.process_time() - cpu
        idle_bytes = digest_bytes() - before
        return {
            "objects": n, "differing": differ, "slots": SLOTS, "fill_seconds": fill_seconds,
            "heads_repaired": repaired, "digest_bytes": exchanged, "questions": questions,
            "repair_bytes": ae.stats.bytes_moved, "all_heads_bytes": len(everything),
            "ratio": len(everything) / exchanged, "round_seconds": round_wall,
            "round_cpu_seconds": round_cpu, "idle_seconds": idle_wall,
            "idle_cpu_seconds": idle_cpu, "idle_bytes": idle_bytes,
        }
    finally:
        for store in stores.values():
            await store.close()


def report(r: dict[str, Any]) -> str:
    return "\n".join([
        "## Anti-entropy: one digest exchange (RFC 0014)",
        "",
        f"Three replicas of {r['objects']:,} objects over {r['slots']} slots; the third "
        f"differs in {r['differing']} paths (half missing, half a generation behind). One "
        "`sync_peer` of the third with the first, on one process, real `LocalStore`s; "
        "bytes are the msgpack questions and answers, HTTP headers aside.",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| heads repaired | {r['heads_repaired']} |",
        f"| digest bytes exchanged (questions + answers) | {r['digest_bytes']:,} "
        f"({r['questions']} questions) |",
        f"| every head shipped as the replica listing (JSON) | {r['all_heads_bytes']:,} |",
        f"| ratio (target ≥ 100) | {r['ratio']:.0f} times fewer |",
        f"| object bytes repaired | {r['repair_bytes']:,} |",
        f"| time of the round, repairs included | {r['round_seconds']:.3f} s "
        f"(CPU {r['round_cpu_seconds']:.3f} s) |",
        f"| a round over identical replicas | {r['idle_seconds'] * 1000:.1f} ms "
        f"(CPU {r['idle_cpu_seconds'] * 1000:.1f} ms), {r['idle_bytes']:,} bytes |",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--differ", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="bench-digest-", dir=shm if shm.is_dir() else None))
    try:
        result = trio.run(run, args.objects, args.differ, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = report(result)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
