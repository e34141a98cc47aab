"""Three-node Rimio benchmark: the replicated path beside a single node of the same run.

Run it as::

    python benchmarks/bench_cluster.py [--quick] [--out benchmarks/cluster.md]

In one run it starts, on loopback, first one ``rimio start`` process (one replica,
the single-node figure) and then three processes forming one keyed cluster with
R = 3 and W = 2, and measures on each with the same load generator (8 clients;
against the cluster, client ``w`` talks to node ``w % 3``):

* 4 KiB PUT and GET (objects/s, p50 and p99);
* 8 MiB PUT and GET (MB/s, median of a few repetitions).

Every cluster row is a ratio to the single-node figure of the same run, with the
target of issue 7 and PASS/MISS. Figures are reported as measured: there are no
timed assertions, and the exit status is 0 unless the benchmark itself crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench_single_node import (
    CLIENTS,
    HOST,
    MIB,
    SMALL_SIZE,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    PhaseStats,
    make_chunks,
    rimio_executable,
    run_concurrent,
    small_path,
)

from rimio.testing import free_port

BIG = 8 * MIB
BENCH_DIR = Path(__file__).resolve().parent
NODES = 3
REPLICAS = 3
WRITE_QUORUM = 2

# The targets of issue 7, as ratios to the single node of the same run.
TARGET_SMALL_PUT = 0.4
TARGET_BIG_PUT = 0.33
TARGET_GET = 0.8


def log(msg: str) -> None:
    print(f"[bench-cluster] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    small_count: int
    big_count: int
    big_reps: int

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(small_count=400, big_count=4, big_reps=2)
        return cls(small_count=2000, big_count=8, big_reps=3)


class Cluster:
    """`count` rimio processes of one cluster on loopback, data under `workdir`."""

    def __init__(self, workdir: Path, count: int, replicas: int, write_quorum: int) -> None:
        self.workdir = workdir
        self.ids = [f"node-{i + 1}" for i in range(count)]
        self.ports = [free_port() for _ in self.ids]
        self.urls = [f"http://{HOST}:{p}" for p in self.ports]
        self.procs: list[subprocess.Popen[bytes]] = []
        nodes = "".join(
            f"    - node_id: {node}\n"
            f"      bind_addr: {HOST}:{port}\n"
            f"      advertise_addr: {HOST}:{port}\n"
            "      disks:\n"
            f"        - path: data/{node}\n"
            for node, port in zip(self.ids, self.ports, strict=True))
        keyed = count > 1
        if keyed:
            subprocess.run([*rimio_executable(), "keygen", str(workdir / "cluster.key")],
                           check=True, stdout=subprocess.DEVNULL)
        self.conf = workdir / "rimio.yaml"
        self.conf.write_text(
            "cluster:\n"
            "  name: bench\n"
            + ("  key_file: cluster.key\n" if keyed else "")
            + "initial_cluster:\n"
            "  nodes:\n"
            + nodes
            + "  replication:\n"
            f"    replicas: {replicas}\n"
            f"    min_write_replicas: {write_quorum}\n",
            encoding="utf-8")

    def start(self) -> None:
        for node in self.ids:
            with open(self.workdir / f"{node}.log", "wb") as out:
                self.procs.append(subprocess.Popen(
                    [*rimio_executable(), "start", "--conf", str(self.conf), "--node", node],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.workdir))
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            for url, proc, node in zip(self.urls, self.procs, self.ids, strict=True):
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{node} exited with {proc.returncode}:\n"
                                           + (self.workdir / f"{node}.log").read_text())
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{url}/api/v1/healthz").status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{node} did not answer /api/v1/healthz")
                    time.sleep(0.05)
            # Every node must see the others before writes need their quorum.
            while time.monotonic() < deadline:
                views = [client.get(f"{url}/api/v1/nodes").json()["nodes"] for url in self.urls]
                if all(sum(1 for n in v if n["status"] == "alive") == len(self.ids)
                       for v in views):
                    return
                time.sleep(0.1)
        raise RuntimeError("the nodes did not all see each other alive")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Figures:
    small_put: PhaseStats
    small_get: PhaseStats
    big_put_mbs: float
    big_get_mbs: float
    errors: list[str]


def measure(urls: Sequence[str], settings: Settings, label: str) -> Figures:
    """The four figures against `urls`, client `w` on `urls[w % len(urls)]`."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.Client(base_url=urls[w % len(urls)], limits=limits, timeout=120.0)
               for w in range(CLIENTS)]
    errors: list[str] = []
    try:
        payloads = [os.urandom(SMALL_SIZE) for _ in range(settings.small_count)]

        def put(w: int, i: int) -> bool:
            r = clients[w].put(f"/api/v1/blobs/{small_path(i)}", content=payloads[i])
            if r.status_code != 201 and len(errors) < 5:
                errors.append(f"PUT {r.status_code} {r.text[:120]}")
            return r.status_code == 201

        def get(w: int, i: int) -> bool:
            r = clients[w].get(f"/api/v1/blobs/{small_path(i)}")
            return r.status_code == 200 and r.content == payloads[i]

        log(f"{label}: 4 KiB PUT x{settings.small_count}")
        small_put = run_concurrent(settings.small_count, CLIENTS, put)
        log(f"{label}: 4 KiB GET x{settings.small_count}")
        small_get = run_concurrent(settings.small_count, CLIENTS, get)
        body = b"".join(make_chunks(BIG, seed=7))
        put_rates: list[float] = []
        get_rates: list[float] = []
        for rep in range(settings.big_reps):
            log(f"{label}: 8 MiB PUT/GET x{settings.big_count}, repetition {rep + 1}")

            def big_put(w: int, i: int, rep: int = rep) -> bool:
                r = clients[w].put(f"/api/v1/blobs/bench/big/{rep}-{i}", content=body)
                if r.status_code != 201 and len(errors) < 5:
                    errors.append(f"8 MiB PUT {r.status_code} {r.text[:120]}")
                return r.status_code == 201

            def big_get(w: int, i: int, rep: int = rep) -> bool:
                r = clients[w].get(f"/api/v1/blobs/bench/big/{rep}-{i}")
                return r.status_code == 200 and len(r.content) == BIG

            stats = run_concurrent(settings.big_count, min(CLIENTS, settings.big_count), big_put)
            put_rates.append(stats.rate * BIG / 1e6)
            stats = run_concurrent(settings.big_count, min(CLIENTS, settings.big_count), big_get)
            get_rates.append(stats.rate * BIG / 1e6)
        return Figures(small_put, small_get, statistics.median(put_rates),
                       statistics.median(get_rates), errors)
    finally:
        for c in clients:
            c.close()


def run_cluster(workdir: Path, count: int, replicas: int, write_quorum: int,
                settings: Settings, label: str) -> Figures:
    where = workdir / label
    where.mkdir()
    cluster = Cluster(where, count, replicas, write_quorum)
    cluster.start()
    try:
        return measure(cluster.urls, settings, label)
    finally:
        cluster.stop()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def render(single: Figures, cluster: Figures, settings: Settings, quick: bool) -> str:
    def verdict(ratio: float, target: float) -> str:
        return "PASS" if ratio >= target else "MISS"

    rows: list[str] = []

    def small(name: str, one: PhaseStats, three: PhaseStats, target: float) -> None:
        ratio = three.rate / one.rate if one.rate else 0.0
        rows.append(
            f"| {name} | {one.rate:,.0f}/s ({ms(one.pct(0.5))} / {ms(one.pct(0.99))} ms) | "
            f"{three.rate:,.0f}/s ({ms(three.pct(0.5))} / {ms(three.pct(0.99))} ms) | "
            f"{ratio:.2f} | ≥ {target} | {verdict(ratio, target)} |")

    def big(name: str, one: float, three: float, target: float) -> None:
        ratio = three / one if one else 0.0
        rows.append(f"| {name} | {one:,.0f} MB/s | {three:,.0f} MB/s | {ratio:.2f} | "
                    f"≥ {target} | {verdict(ratio, target)} |")

    small("4 KiB PUT", single.small_put, cluster.small_put, TARGET_SMALL_PUT)
    small("4 KiB GET", single.small_get, cluster.small_get, TARGET_GET)
    big("8 MiB PUT", single.big_put_mbs, cluster.big_put_mbs, TARGET_BIG_PUT)
    big("8 MiB GET", single.big_get_mbs, cluster.big_get_mbs, TARGET_GET)
    errors = [f"- single node: {e}" for e in single.errors]
    errors += [f"- cluster: {e}" for e in cluster.errors]
    failed = (cluster.small_put.errors + cluster.small_get.errors,
              single.small_put.errors + single.small_get.errors)
    lines = [
        "# Three-node cluster (issue 7)", "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()})"
        f"{', quick mode' if quick else ''}: {CLIENTS} clients, "
        f"{settings.small_count} objects of 4 KiB, {settings.big_count} of 8 MiB, "
        f"{settings.big_reps} repetitions (median). "
        "Single node: one process, R = 1. "
        f"Cluster: {NODES} processes on loopback with a cluster key, R = {REPLICAS}, "
        f"W = {WRITE_QUORUM}; client w talks to node w mod {NODES}. "
        "Rates count successful requests only; latencies are p50 / p99.", "",
        "| measurement | single node | 3 nodes, W = 2 | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
        *rows, "",
        f"Failed 4 KiB requests: cluster {failed[0]}, single node {failed[1]}.",
    ]
    if errors:
        lines += ["", "First errors seen:", *errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer objects and repetitions")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "cluster.md")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / ".work")
    args = parser.parse_args(argv)
    settings = Settings.for_mode(args.quick)
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=args.workdir))
    try:
        single = run_cluster(workdir, 1, 1, 1, settings, "single")
        cluster = run_cluster(workdir, NODES, REPLICAS, WRITE_QUORUM, settings, "cluster")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            args.workdir.rmdir()
    report = render(single, cluster, settings, args.quick)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
