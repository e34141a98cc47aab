"""Client latency while anti-entropy heals a big backlog (issue 8, item 3).

Run it as::

    python benchmarks/bench_healing.py [--quick] [--out benchmarks/healing.md]

Three keyed ``rimio start`` processes on loopback, R = 3, W = 2, anti-entropy
every few seconds. The same client load — a few clients, each alternating a
4 KiB GET of a preloaded object and a 4 KiB PUT of a new one, with a short
think time, client ``w`` on node ``w % 3`` — runs in three phases:

1. *idle*: all three nodes up and in sync (only their idle digest rounds run);
2. *healing*: node-3 was stopped, a backlog of objects (mostly small, some of
   several MiB) was written to the other two, and node-3 was started again;
   the phase lasts from node-3 answering until the status endpoints
   (`GET /api/v1/status`) show the backlog repaired;
3. *idle after*: the same load once more, after healing, as a check of how much
   the machine itself drifted during the run.

It reports p50 and p99 of GET and PUT in each phase and the ratio
p99(healing) / p99(idle) against the target of at most 2. Figures are
reported as measured: no timed assertion, exit status 0 unless the
benchmark itself fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_cluster import Cluster
from bench_single_node import (
    MIB,
    SMALL_SIZE,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    percentile,
    rimio_executable,
)

BENCH_DIR = Path(__file__).resolve().parent
TARGET = 2.0  # p99 under healing at most this many times p99 at idle
CLIENTS = 3
THINK_S = 0.02  # each client pauses this long between its requests
WARMUP_S = 3.0  # load before an idle phase's measurement starts
REPAIR_INTERVAL_S = 3.0
FAST_MEMBERSHIP = ("membership:\n  probe_interval: 0.4\n  probe_timeout: 0.2\n"
                   "  gossip_interval: 0.1\n  push_pull_interval: 5.0\n"
                   "  reconnect_interval: 1.0\n")


def log(msg: str) -> None:
    print(f"[bench-healing] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    preload: int  # 4 KiB objects the clients read
    idle_seconds: float  # each idle phase
    backlog_small: int  # 4 KiB objects written while node-3 is down
    backlog_big: int  # and objects of `big_size`
    big_size: int
    heal_timeout: float

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(preload=200, idle_seconds=8.0, backlog_small=600, backlog_big=6,
                       big_size=2 * MIB, heal_timeout=120.0)
        return cls(preload=500, idle_seconds=20.0, backlog_small=2000, backlog_big=24,
                   big_size=2 * MIB, heal_timeout=600.0)


class HealingCluster(Cluster):
    """`bench_cluster.Cluster` with anti-entropy every few seconds, quick failure
    detection, and one node stopped and started on its own."""

    def __init__(self, workdir: Path, repair: str) -> None:
        super().__init__(workdir, 3, 3, 2)
        with open(self.conf, "a", encoding="utf-8") as conf:
            conf.write(FAST_MEMBERSHIP + repair)

    def stop_node(self, i: int) -> None:
        proc = self.procs[i]
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def start_node(self, i: int) -> None:
        node = self.ids[i]
        with open(self.workdir / f"{node}.log", "ab") as out:
            self.procs[i] = subprocess.Popen(
                [*rimio_executable(), "start", "--conf", str(self.conf), "--node", node],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"{node} exited:\n"
                                       + (self.workdir / f"{node}.log").read_text())
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.urls[i]}/api/v1/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"{node} did not come back")

    def cpu(self) -> list[float]:
        """CPU seconds (user + system) each node's process has used so far."""
        out = []
        for proc in self.procs:
            t = psutil.Process(proc.pid).cpu_times()
            out.append(float(t.user + t.system))
        return out

    def status(self, i: int) -> dict[str, Any]:
        with httpx.Client(timeout=5.0) as client:
            body: dict[str, Any] = client.get(f"{self.urls[i]}/api/v1/status").json()
            return body

    def sees(self, watchers: Sequence[int], node: str, alive: bool) -> bool:
        with httpx.Client(timeout=2.0) as client:
            for i in watchers:
                view = client.get(f"{self.urls[i]}/api/v1/nodes").json()["nodes"]
                status = {n["node_id"]: n["status"] for n in view}.get(node)
                if (status == "alive") != alive:
                    return False
        return True


def wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if pred():
                return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting until {what}")


@dataclass
class Sample:
    started: float  # time.monotonic() when the request was sent
    op: str  # GET or PUT
    seconds: float
    ok: bool
    node: int = 0  # the node the client talks to


@dataclass
class Load:
    """The client load, running on threads until `stop()`; every request is
    recorded with the time it was sent, so phases are cut out afterwards."""

    urls: Sequence[str]
    preload: Sequence[bytes]
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=CLIENTS)
        for w in range(CLIENTS):
            self._pool.submit(self._client, w)

    def stop(self) -> None:
        self._stop.set()
        assert self._pool is not None
        self._pool.shutdown(wait=True)

    def _client(self, w: int) -> None:
        rng = random.Random(w)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        body = os.urandom(SMALL_SIZE)
        with httpx.Client(base_url=self.urls[w % len(self.urls)], limits=limits,
                          timeout=60.0) as client:
            n = 0
            while not self._stop.is_set():
                i = rng.randrange(len(self.preload))
                t0 = time.monotonic()
                try:
                    r = client.get(f"/api/v1/blobs/bench/pre/{i}")
                    ok = r.status_code == 200 and r.content == self.preload[i]
                except httpx.HTTPError:
                    ok = False
                self._record(Sample(t0, "GET", time.monotonic() - t0, ok, w % len(self.urls)))
                time.sleep(THINK_S)
                t0 = time.monotonic()
                try:
                    r = client.put(f"/api/v1/blobs/bench/load/{w}/{n}", content=body)
                    ok = r.status_code == 201
                except httpx.HTTPError:
                    ok = False
                self._record(Sample(t0, "PUT", time.monotonic() - t0, ok, w % len(self.urls)))
                n += 1
                time.sleep(THINK_S)

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def window(self, start: float, end: float, op: str) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.started < end and s.op == op]


@dataclass
class Phase:
    name: str
    seconds: float
    get: list[Sample]
    put: list[Sample]
    cpu: list[float]  # each node's CPU seconds during the phase

    @staticmethod
    def p(samples: list[Sample], q: float) -> float:
        return percentile([s.seconds for s in samples if s.ok], q)

    @staticmethod
    def failed(samples: list[Sample]) -> int:
        return sum(1 for s in samples if not s.ok)


@dataclass
class Healing:
    heads: int  # heads node-3 pulled plus heads the others pushed
    parts: int
    bytes: int
    rounds: int
    seconds: float
    finished: bool = True


def write_backlog(urls: Sequence[str], settings: Settings) -> int:
    """Write the backlog through `urls` (the nodes that are up); its bytes."""
    big = os.urandom(settings.big_size)
    small = os.urandom(SMALL_SIZE)
    jobs = [(f"bench/backlog/big/{i}", big) for i in range(settings.backlog_big)]
    jobs += [(f"bench/backlog/small/{i}", small) for i in range(settings.backlog_small)]
    clients = [httpx.Client(base_url=urls[w % len(urls)], timeout=120.0) for w in range(8)]
    try:
        def put(k: int) -> None:
            path, data = jobs[k]
            r = clients[k % 8].put(f"/api/v1/blobs/{path}", content=data)
            if r.status_code != 201:
                raise RuntimeError(f"backlog PUT {path}: {r.status_code} {r.text[:200]}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, range(len(jobs))))
    finally:
        for c in clients:
            c.close()
    return sum(len(d) for _, d in jobs)


def healed(cluster: HealingCluster, since: float) -> Healing | None:
    """What healing did, once every node has completed a round over every peer
    that ended after `since` (wall clock; node-3 answering): node-3 has pulled
    what it lacked and the others have finished pushing to it. None before."""
    ae = [cluster.status(i)["anti_entropy"] for i in range(3)]
    if any(a["last_full_round"] is None or a["last_full_round"] < since for a in ae):
        return None
    return Healing(heads=sum(a["heads_pulled"] + a["heads_pushed"] for a in ae),
                   parts=sum(a["parts_pulled"] + a["parts_pushed"] for a in ae),
                   bytes=sum(a["bytes_pulled"] + a["bytes_pushed"] for a in ae),
                   rounds=ae[2]["rounds"], seconds=0.0)


def run(workdir: Path, settings: Settings, repair: str) -> tuple[list[Phase], Healing, int]:
    cluster = HealingCluster(workdir, repair)
    cluster.start()
    try:
        preload = [os.urandom(SMALL_SIZE) for _ in range(settings.preload)]
        with httpx.Client(timeout=30.0) as client:
            for i, data in enumerate(preload):
                r = client.put(f"{cluster.urls[i % 3]}/api/v1/blobs/bench/pre/{i}", content=data)
                assert r.status_code == 201, r.text
        load = Load(cluster.urls, preload)
        phases: list[Phase] = []

        def measure_idle(name: str) -> None:
            log(f"{name}: {settings.idle_seconds:.0f} s of client load")
            load.samples.clear()
            load.start()
            time.sleep(WARMUP_S)  # connections opened, caches and slot databases warm
            t0, cpu0 = time.monotonic(), cluster.cpu()
            time.sleep(settings.idle_seconds)
            t1, cpu1 = time.monotonic(), cluster.cpu()
            load.stop()
            phases.append(Phase(name, t1 - t0, load.window(t0, t1, "GET"),
                                load.window(t0, t1, "PUT"),
                                [b - a for a, b in zip(cpu0, cpu1, strict=True)]))

        measure_idle("idle")
        log("stopping node-3")
        cluster.stop_node(2)
        wait(lambda: cluster.sees([0, 1], "node-3", alive=False), 30, "node-3 is seen down")
        count = settings.backlog_small + settings.backlog_big
        log(f"writing the backlog: {count} objects to node-1 and node-2")
        size = write_backlog(cluster.urls[:2], settings)
        log(f"backlog: {count} objects, {size / MIB:.1f} MiB; starting node-3")
        load.samples.clear()
        load.start()  # clients on all three nodes, as at idle
        t0 = time.monotonic()
        cluster.start_node(2)
        ready, ready_wall, cpu0 = time.monotonic(), time.time(), cluster.cpu()
        done: Healing | None = None
        deadline = ready + settings.heal_timeout
        while done is None and time.monotonic() < deadline:
            time.sleep(0.25)
            with contextlib.suppress(httpx.HTTPError, KeyError):
                done = healed(cluster, ready_wall)
        t1, cpu1 = time.monotonic(), cluster.cpu()
        load.stop()
        if done is None:  # reported as such: the phase is what the clients saw meanwhile
            log(f"node-3 did not heal within {settings.heal_timeout:.0f} s")
            ae = [cluster.status(i)["anti_entropy"] for i in range(3)]
            done = Healing(heads=sum(a["heads_pulled"] + a["heads_pushed"] for a in ae),
                           parts=sum(a["parts_pulled"] + a["parts_pushed"] for a in ae),
                           bytes=sum(a["bytes_pulled"] + a["bytes_pushed"] for a in ae),
                           rounds=ae[2]["rounds"], seconds=t1 - ready, finished=False)
        done.seconds = t1 - ready
        log(f"healing phase {done.seconds:.1f} s (node-3 took {ready - t0:.1f} s to answer)")
        # requests to node-3 before it answers are not healing: count from `ready`
        phases.append(Phase("healing", t1 - ready, load.window(ready, t1, "GET"),
                            load.window(ready, t1, "PUT"),
                            [b - a for a, b in zip(cpu0, cpu1, strict=True)]))
        measure_idle("idle after")
        return phases, done, size
    finally:
        cluster.stop()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def render(phases: list[Phase], heal: Healing, size: int, settings: Settings, quick: bool,
           repair: str) -> str:
    idle, healing, after = phases
    rows = []
    for ph in phases:
        cpu = " / ".join(f"{c / ph.seconds:.0%}" for c in ph.cpu)
        for op, samples in (("GET", ph.get), ("PUT", ph.put)):
            ok = [s for s in samples if s.ok]
            rows.append(f"| {ph.name} ({ph.seconds:.0f} s) | 4 KiB {op} | {len(ok)} | "
                        f"{Phase.failed(samples)} | {ms(Phase.p(samples, 0.5))} | "
                        f"{ms(Phase.p(samples, 0.99))} | {cpu} |")
    verdicts = []
    for op, a, b, c in (("GET", idle.get, healing.get, after.get),
                        ("PUT", idle.put, healing.put, after.put)):
        ratio = Phase.p(b, 0.99) / Phase.p(a, 0.99)
        drift = Phase.p(c, 0.99) / Phase.p(a, 0.99)
        verdict = "PASS" if ratio <= TARGET else "**MISS**"
        verdicts.append(f"| 4 KiB {op} | {ratio:.2f} | ≤ {TARGET:g} | {verdict} | "
                        f"{Phase.p(b, 0.99) / Phase.p(c, 0.99):.2f} | {drift:.2f} |")
    repair_line = " ".join(line.strip() for line in repair.strip().splitlines()[1:])
    return "\n".join([
        "# Client latency while healing (issue 8, item 3)", "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()})"
        f"{', quick mode' if quick else ''}, by `python benchmarks/bench_healing.py"
        f"{' --quick' if quick else ''}`. Three `rimio start` processes on loopback with "
        f"a cluster key, R = 3, W = 2, anti-entropy every {REPAIR_INTERVAL_S:g} s "
        f"(repair: {repair_line}). Load: {CLIENTS} clients, client w on node w mod 3, "
        f"each alternating a 4 KiB GET of one of {settings.preload} preloaded objects and "
        f"a 4 KiB PUT of a new one, {THINK_S * 1000:g} ms apart.", "",
        f"Backlog: node-3 stopped, {settings.backlog_small} objects of 4 KiB and "
        f"{settings.backlog_big} of {settings.big_size // MIB} MiB "
        f"({size / MIB:.0f} MiB) written to the other two, node-3 started again. "
        + (f"Healing took {heal.seconds:.1f} s: from node-3 answering until every node "
         "had completed a round over every peer that ended after that. The three "
         if heal.finished else
         f"Healing had **not finished** after {heal.seconds:.1f} s, when the "
         "benchmark gave up waiting (the healing phase below is those seconds). The three ")
        +
        f"nodes repaired {heal.heads} heads, {heal.parts} part files and "
        f"{heal.bytes / MIB:.0f} MiB in all (node-3 pulling, {heal.rounds} round(s), "
        "and the others pushing to it at the same time, so some objects travel "
        "more than once). Latencies of successful requests sent during each phase "
        f"(idle phases after {WARMUP_S:g} s of warm-up load); p99 is the nearest rank.", "",
        "| phase | operation | requests | failed | p50 ms | p99 ms "
        "| CPU of node-1 / 2 / 3 (one core = 100%) |",
        "|---|---|---:|---:|---:|---:|---|",
        *rows, "",
        "| operation | p99 healing / idle | target | verdict | p99 healing / idle after "
        "| p99 idle after / idle (drift) |",
        "|---|---:|---|---|---:|---:|",
        *verdicts, "",
    ])


def repair_section(bytes_per_second: int | None, slot_concurrency: int | None) -> str:
    rate = f"  bytes_per_second: {bytes_per_second}\n" if bytes_per_second else ""
    if slot_concurrency:
        rate += f"  slot_concurrency: {slot_concurrency}\n"
    return f"repair:\n  interval_seconds: {REPAIR_INTERVAL_S}\n{rate}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller backlog, shorter phases")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "healing.md")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / ".work")
    parser.add_argument("--repair-bytes-per-second", type=int, default=None,
                        help="override the repair rate (default: the node's default)")
    parser.add_argument("--samples", type=Path, default=None,
                        help="also write every request's timing here (JSON)")
    parser.add_argument("--repair-slot-concurrency", type=int, default=None,
                        help="override repair.slot_concurrency (default: the node's default)")
    args = parser.parse_args(argv)
    settings = Settings.for_mode(args.quick)
    repair = repair_section(args.repair_bytes_per_second, args.repair_slot_concurrency)
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-healing-", dir=args.workdir))
    try:
        phases, heal, size = run(workdir, settings, repair)
        if args.samples is not None:
            args.samples.write_text(json.dumps(
                {ph.name: [dataclasses.asdict(x) for x in ph.get + ph.put] for ph in phases}))
    except BaseException:
        log(f"failed; the nodes' logs are kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        args.workdir.rmdir()
    report = render(phases, heal, size, settings, args.quick, repair)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
