"""Single-node Rimio benchmark: every figure beside a ceiling measured in the same run.

Run it as::

    python benchmarks/bench_single_node.py [--quick] [--out benchmarks/single-node.md]

In one run it starts a real ``rimio start`` process on a loopback port (data in a
temporary directory under ``benchmarks/.work/``, removed afterwards) and measures:

* 4 KiB PUT with 8 concurrent clients (objects/s): first writes into a fresh store,
  then overwrites of the same paths (every slot database already open);
* 4 KiB GET with 8 concurrent clients (objects/s);
* 64 MiB PUT and GET (MB/s, median of a few repetitions);
* the peak RSS of the rimio process while a 1 GiB body (256 MiB with ``--quick``),
  generated on the fly, is PUT, and while it is read back with GET;
* system calls per PUT (new path, overwrite, large), counted by attaching
  ``strace -f -c`` to the server for a fixed number of PUTs (`syscalls.py`), and the
  same for the baseline's durable write (`durable_writer.py`);
* slot-database opens and evictions per PUT, when the node exposes its slot-cache
  counters on a stats endpoint (otherwise the report says "not exposed").

The ceilings, measured in the same run on the same file system with the same sizes
and concurrency: a plain-Python durable-write baseline (for each object: write a temp
file, fsync, rename, fsync the directory; read back is open + read), a do-nothing
quart-trio app (`bare_app.py`, the HTTP stack's own cost per request) and a trivial
in-memory socket server (`loopback_server.py`, the client's own limit). Every Rimio
row is a ratio to one of them, with the target of issue 10 and PASS/MISS, and the
p50 and p99 latencies beside the rate. Figures are reported as measured: there are
no timed assertions, and the exit status is 0 unless the benchmark itself crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from syscalls import SyscallCounts, SyscallWindow

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SMALL_SIZE = 4 * KIB
BIG_SIZE = 64 * MIB
CHUNK = 1 * MIB  # client-side body chunk and baseline read/write size
CLIENTS = 8
HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
RSS_SAMPLE_S = 0.01

# The targets of issue 10, as ratios to a ceiling measured in the same run.
TARGET_SMALL_PUT_RATIO = 0.10  # of the durable baseline's 4 KiB writes
TARGET_SMALL_GET_RATIO = 0.9  # of the do-nothing app's 4 KiB GETs
TARGET_BIG_PUT_RATIO = 0.8  # of the baseline's 64 MiB durable write
TARGET_BIG_GET_RATIO = 0.5  # of the baseline's 64 MiB read
TARGET_RSS_BYTES = 200 * MIB

# Where a node may publish its slot-cache counters (JSON); probed once, optional.
STATS_PATHS = ("/api/v1/stats", "/api/v1/metrics", "/internal/v1/stats")
COUNTER_KEYS = {
    "opens": ("opens", "slot_opens", "slot_db_opens", "open_count"),
    "evictions": ("evictions", "slot_evictions", "slot_db_evictions", "eviction_count"),
    "creations": ("creations", "slot_creations", "slot_db_creations", "creation_count"),
}


@dataclass(frozen=True)
class Settings:
    quick: bool
    small_count: int  # objects per 4 KiB phase, split over CLIENTS threads
    big_reps: int
    rss_size: int
    traced_small: int  # 4 KiB PUTs per strace window
    traced_big: int  # 64 MiB PUTs in the strace window

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, small_count=400, big_reps=2, rss_size=256 * MIB,
                       traced_small=80, traced_big=1)
        return cls(quick=False, small_count=2000, big_reps=5, rss_size=1 * GIB,
                   traced_small=400, traced_big=3)


@dataclass
class Row:
    """One Rimio figure, as a ratio to a ceiling of the same run when there is one."""

    name: str
    unit: str
    rimio: float
    ceiling: str  # which ceiling `ceiling_value` is; "" when the row has none
    ceiling_value: float | None
    target: str
    passed: bool | None  # None: informational, no target
    p50: float | None = None  # seconds per operation
    p99: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ceiling_value is None or self.ceiling_value == 0:
            return None
        return self.rimio / self.ceiling_value


@dataclass(frozen=True)
class Ceiling:
    """A figure that bounds a Rimio row, measured in the same run."""

    name: str
    unit: str
    value: float
    p50: float | None
    p99: float | None
    note: str = ""


@dataclass(frozen=True)
class PutCost:
    """System calls and slot-database work per PUT of one kind; a str is why it is missing."""

    kind: str
    ops: int
    rimio: SyscallCounts | str
    baseline: SyscallCounts | str
    slots: dict[str, int] | str


@dataclass
class PhaseStats:
    ops: int
    seconds: float
    errors: int
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return (self.ops - self.errors) / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile; with fewer than 100 values p99 is the maximum."""
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


# -- data ---------------------------------------------------------------------------------


def make_chunks(total: int, seed: int) -> list[bytes]:
    """`total` bytes of pseudo-random data as a list of CHUNK-sized bytes objects."""
    rng = random.Random(seed)
    return [rng.randbytes(min(CHUNK, total - off)) for off in range(0, total, CHUNK)]


def cycled_body(chunks: Sequence[bytes], total: int) -> Iterator[bytes]:
    """Yield `total` bytes by cycling over `chunks`; nothing bigger than a chunk is built."""
    sent = 0
    i = 0
    while sent < total:
        chunk = chunks[i % len(chunks)]
        if sent + len(chunk) > total:
            chunk = chunk[: total - sent]
        yield chunk
        sent += len(chunk)
        i += 1


# -- the rimio process --------------------------------------------------------------------


def rimio_executable() -> list[str]:
    script = Path(sys.executable).parent / "rimio"
    if script.exists():
        return [str(script)]
    found = shutil.which("rimio")
    if found:
        return [found]
    raise SystemExit("bench: cannot find the `rimio` console script; install the package first")


class RimioProcess:
    """A `rimio start` subprocess on 127.0.0.1 with its data under `workdir`."""

    def __init__(self, workdir: Path, max_object_bytes: int) -> None:
        self.workdir = workdir
        self.conf = workdir / "rimio.yaml"
        self.log_path = workdir / "rimio.log"
        self.conf.write_text(
            "cluster:\n"
            "  name: bench\n"
            "initial_cluster:\n"
            "  nodes:\n"
            "    - node_id: node-1\n"
            f"      bind_addr: {HOST}:0\n"
            "      disks:\n"
            "        - path: data\n"
            "  replication:\n"
            "    replicas: 1\n"
            "    min_write_replicas: 1\n"
            "storage:\n"
            f"  max_object_bytes: {max_object_bytes}\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        cmd = [*rimio_executable(), "start", "--conf", str(self.conf), "--node", "node-1"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT_S
        marker = "serving on "
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rimio exited with {self.proc.returncode}:\n{self.log()}")
            for line in self.log().splitlines():
                if "rimio " in line and marker in line:
                    self.url = line.split(marker, 1)[1].strip()
            if self.url:
                break
            time.sleep(0.05)
        if not self.url:
            raise RuntimeError(f"rimio did not start in {START_TIMEOUT_S}s:\n{self.log()}")
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/api/v1/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError("rimio never answered /api/v1/healthz with 200")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            return None


class RssSampler:
    """Samples the RSS of one process in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0
        self.start = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._proc.memory_info().rss)
                self.samples += 1
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._proc.memory_info().rss)


class CpuMeter:
    """CPU seconds (user + system) the server and this client spend in a `with` block."""

    def __init__(self, server_pid: int) -> None:
        self._server = psutil.Process(server_pid)
        self._client = psutil.Process(os.getpid())
        self.seconds = 0.0  # server
        self.client_seconds = 0.0

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        t = proc.cpu_times()
        return float(t.user + t.system)

    def __enter__(self) -> CpuMeter:
        self._start = (self._cpu(self._server), self._cpu(self._client))
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = self._cpu(self._server) - self._start[0]
        self.client_seconds = self._cpu(self._client) - self._start[1]


# -- concurrency helper -------------------------------------------------------------------


def run_concurrent(count: int, workers: int, op: Callable[[int, int], bool]) -> PhaseStats:
    """Run `op(worker, index)` for indices 0..count-1 split over `workers` threads."""
    barrier = threading.Barrier(workers + 1)
    latencies: list[list[float]] = [[] for _ in range(workers)]
    errors = [0] * workers

    def worker(w: int) -> None:
        mine = range(w, count, workers)
        barrier.wait()
        for i in mine:
            t0 = time.perf_counter()
            ok = op(w, i)
            latencies[w].append(time.perf_counter() - t0)
            if not ok:
                errors[w] += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(worker, w) for w in range(workers)]
        barrier.wait()
        t0 = time.perf_counter()
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t0
    return PhaseStats(count, elapsed, sum(errors), [x for lat in latencies for x in lat])


# -- baseline -----------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(directory: Path, name: str, chunks: Iterator[bytes]) -> int:
    """Write to a temp file, fsync, rename, fsync the directory. Returns bytes written."""
    tmp = directory / f".tmp-{name}-{threading.get_ident()}"
    size = 0
    with open(tmp, "wb", buffering=0) as f:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = f.write(view)
                assert n is not None
                view = view[n:]
                size += n
        os.fsync(f.fileno())
    os.rename(tmp, directory / name)
    fsync_dir(directory)
    return size


def plain_read(path: Path) -> int:
    size = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return size
            size += len(data)


class Baseline:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.small_dir = root / "small"
        self.big_dir = root / "big"
        self.small_dir.mkdir(parents=True)
        self.big_dir.mkdir(parents=True)
        fsync_dir(root)

    def small_put(self, payloads: Sequence[bytes], count: int) -> PhaseStats:
        def op(_w: int, i: int) -> bool:
            return durable_write(self.small_dir, f"obj-{i:06d}",
                                 iter((payloads[i],))) == SMALL_SIZE

        return run_concurrent(count, CLIENTS, op)

    def small_get(self, count: int) -> PhaseStats:
        def op(_w: int, i: int) -> bool:
            return plain_read(self.small_dir / f"obj-{i:06d}") == SMALL_SIZE

        return run_concurrent(count, CLIENTS, op)

    def big_put(self, chunks: Sequence[bytes], rep: int) -> float:
        t0 = time.perf_counter()
        size = durable_write(self.big_dir, f"big-{rep}", iter(chunks))
        elapsed = time.perf_counter() - t0
        assert size == BIG_SIZE
        return elapsed

    def big_get(self, rep: int) -> float:
        t0 = time.perf_counter()
        size = plain_read(self.big_dir / f"big-{rep}")
        elapsed = time.perf_counter() - t0
        assert size == BIG_SIZE
        return elapsed


# -- rimio client -------------------------------------------------------------------------


def small_path(i: int, prefix: str = "bench/small") -> str:
    return f"{prefix}/obj-{i:06d}"


class RimioClient:
    def __init__(self, url: str) -> None:
        self.url = url
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(120.0)
        # One client (one kept-alive connection) per concurrent worker.
        self.clients = [httpx.Client(base_url=url, limits=limits, timeout=timeout)
                        for _ in range(CLIENTS)]

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def small_put(self, payloads: Sequence[bytes], count: int,
                  prefix: str = "bench/small") -> PhaseStats:
        def op(w: int, i: int) -> bool:
            r = self.clients[w].put(f"/api/v1/blobs/{small_path(i, prefix)}",
                                    content=payloads[i])
            return r.status_code == 201

        return run_concurrent(count, CLIENTS, op)

    def small_get(self, payloads: Sequence[bytes] | None, count: int) -> PhaseStats:
        """GET objects 0..count-1 and compare them with `payloads` (or only their size)."""

        def op(w: int, i: int) -> bool:
            r = self.clients[w].get(f"/api/v1/blobs/{small_path(i)}")
            if payloads is None:
                return r.status_code == 200 and len(r.content) == SMALL_SIZE
            return r.status_code == 200 and r.content == payloads[i]

        return run_concurrent(count, CLIENTS, op)

    def put_stream(self, path: str, body: Iterator[bytes], size: int) -> httpx.Response:
        # An explicit Content-Length makes httpx send the generator unchunked.
        return self.clients[0].put(f"/api/v1/blobs/{path}", content=body,
                                   headers={"Content-Length": str(size)})

    def get_stream(self, path: str) -> int:
        received = 0
        with self.clients[0].stream("GET", f"/api/v1/blobs/{path}") as r:
            if r.status_code != 200:
                raise RuntimeError(f"GET {path}: {r.status_code} {r.read()[:200]!r}")
            for chunk in r.iter_bytes():
                received += len(chunk)
        return received


# -- client ceiling ----------------------------------------------------------------------


@contextlib.contextmanager
def helper_server(script: str, *args: str) -> Iterator[str]:
    """Run a helper server of this directory; yield its URL; always terminate it."""
    cmd = [sys.executable, str(BENCH_DIR / script), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"{script} did not report its port")
        yield f"http://{HOST}:{int(line)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


def measure_stack_ceiling(payloads: Sequence[bytes], count: int) -> tuple[PhaseStats, PhaseStats]:
    """4 KiB PUT and GET with the same clients against a do-nothing quart-trio app."""
    with helper_server("bare_app.py") as url:
        client = RimioClient(url)
        try:
            return client.small_put(payloads, count), client.small_get(None, count)
        finally:
            client.close()


def timed_put(client: RimioClient, path: str, chunks: Sequence[bytes]) -> float:
    t0 = time.perf_counter()
    resp = client.put_stream(path, iter(chunks), BIG_SIZE)
    elapsed = time.perf_counter() - t0
    if resp.status_code != 201:
        raise RuntimeError(f"64 MiB PUT {path}: {resp.status_code} {resp.text[:200]}")
    return elapsed


def timed_get(client: RimioClient, path: str) -> float:
    t0 = time.perf_counter()
    got = client.get_stream(path)
    elapsed = time.perf_counter() - t0
    if got != BIG_SIZE:
        raise RuntimeError(f"64 MiB GET {path} returned {got} bytes")
    return elapsed


@dataclass
class BigStream:
    """The outcome of one huge streamed PUT (and optional GET) with RSS sampling."""

    put_peak: int
    put_start: int
    put_samples: int
    put_seconds: float
    get_peak: int | None = None
    get_samples: int = 0
    get_seconds: float = 0.0


def rss_check(client: RimioClient, pid: int, chunks: Sequence[bytes], size: int, path: str,
              with_get: bool) -> BigStream:
    """PUT `size` bytes generated on the fly while sampling the server's RSS; then GET."""
    with RssSampler(pid) as rss_put:
        t0 = time.perf_counter()
        resp = client.put_stream(path, cycled_body(chunks, size), size)
        put_s = time.perf_counter() - t0
    if resp.status_code != 201:
        raise RuntimeError(f"{size} byte PUT: {resp.status_code} {resp.text[:200]}")
    out = BigStream(rss_put.peak, rss_put.start, rss_put.samples, put_s)
    if with_get:
        with RssSampler(pid) as rss_get:
            t0 = time.perf_counter()
            got = client.get_stream(path)
            out.get_seconds = time.perf_counter() - t0
        if got != size:
            raise RuntimeError(f"{size} byte GET returned {got} bytes")
        out.get_peak, out.get_samples = rss_get.peak, rss_get.samples
    return out


def count_slot_dirs(data: Path) -> int:
    with contextlib.suppress(OSError):
        return sum(1 for e in os.scandir(data / "slots") if e.is_dir())
    return 0


def run_fresh_rss_check(workdir: Path, chunks: Sequence[bytes], size: int) -> BigStream:
    """The RSS check on a node that has served nothing else."""
    node = RimioProcess(workdir, max_object_bytes=max(5 * GIB, size))
    client: RimioClient | None = None
    try:
        node.start()
        client = RimioClient(node.url)
        return rss_check(client, node.pid, chunks, size, "bench/huge", with_get=True)
    except BaseException:
        tail = "\n".join(node.log().splitlines()[-40:])
        log(f"rimio (fresh): benchmark failed; last lines of the node's log:\n{tail}")
        raise
    finally:
        if client is not None:
            client.close()
        node.stop()


# -- slot-cache counters ------------------------------------------------------------------


def find_counters(doc: object) -> dict[str, int] | None:
    """The first object in a JSON document holding slot-cache opens and evictions counters."""
    if isinstance(doc, dict):
        found: dict[str, int] = {}
        for name, keys in COUNTER_KEYS.items():
            for key in keys:
                value = doc.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    found[name] = value
                    break
        if "opens" in found and "evictions" in found:
            return found
        children: list[object] = list(doc.values())
    elif isinstance(doc, list):
        children = list(doc)
    else:
        return None
    for child in children:
        got = find_counters(child)
        if got is not None:
            return got
    return None


class SlotCounters:
    """Reads the node's slot-cache counters, if some stats endpoint publishes them.

    The node may not expose them at all; then `path` is None and every reading is
    None, and the report says "not exposed" instead of a figure.
    """

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self.path: str | None = None
        for path in STATS_PATHS:
            if self._fetch(path) is not None:
                self.path = path
                break

    def _fetch(self, path: str) -> dict[str, int] | None:
        try:
            resp = self._client.get(path)
            if resp.status_code != 200:
                return None
            return find_counters(resp.json())
        except (httpx.HTTPError, ValueError):
            return None

    def read(self) -> dict[str, int] | None:
        return None if self.path is None else self._fetch(self.path)

    @staticmethod
    def delta(before: dict[str, int] | None,
              after: dict[str, int] | None) -> dict[str, int] | str:
        if before is None or after is None:
            return "not exposed"
        return {k: after[k] - before[k] for k in after if k in before}


def slots_note(delta: dict[str, int] | str, ops: int) -> str:
    if isinstance(delta, str):
        return f"slot DB opens/evictions per PUT: {delta}"
    return "slot DB per PUT: " + ", ".join(f"{v / ops:.2f} {k}" for k, v in delta.items())


# -- system calls per PUT -----------------------------------------------------------------


class BaselineWriter:
    """`durable_writer.py` as a child process: durable writes on cue, for strace."""

    def __init__(self, directory: Path) -> None:
        cmd = [sys.executable, str(BENCH_DIR / "durable_writer.py"), "--dir", str(directory)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=BENCH_DIR)
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"durable_writer.py said {line!r}, expected {word!r}")

    def write(self, prefix: str, size: int, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{prefix} {size} {count}\n")
        self.proc.stdin.flush()
        self._expect("done")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def count_syscalls(pid: int, ops: int, work: Callable[[], None]) -> SyscallCounts | str:
    """Run `work` (`ops` PUTs) once, under strace attached to `pid` if it can be."""
    with SyscallWindow(pid, ops) as window:
        work()
    return window.result


def measure_put_costs(node_pid: int, client: RimioClient, slots: SlotCounters,
                      settings: Settings, small: Sequence[bytes], small2: Sequence[bytes],
                      big_chunks: Sequence[bytes], workdir: Path) -> list[PutCost]:
    """Syscalls (and slot-database work) per PUT: new path, overwrite, large; and baseline's.

    The 4 KiB PUTs go to paths no earlier phase used, with the same 8 clients as the
    rate rows; the large ones are single 64 MiB PUTs, as in the 64 MiB rows. The
    baseline does the same writes, one at a time, in `durable_writer.py`.
    """
    n, nb = settings.traced_small, settings.traced_big
    prefix = "bench/syscalls"

    def put_small(payloads: Sequence[bytes]) -> Callable[[], None]:
        def work() -> None:
            stats = client.small_put(payloads, n, prefix)
            if stats.errors:
                raise RuntimeError(f"{stats.errors} of the traced 4 KiB PUTs failed")
        return work

    def put_big() -> None:
        for i in range(nb):
            timed_put(client, f"{prefix}/big-{i}", big_chunks)

    kinds: list[tuple[str, int, Callable[[], None], str, int]] = [
        ("new path, 4 KiB", n, put_small(small), "small", SMALL_SIZE),
        ("overwrite, 4 KiB", n, put_small(small2), "small", SMALL_SIZE),
        ("large, 64 MiB", nb, put_big, "big", BIG_SIZE),
    ]
    writer = BaselineWriter(workdir / "baseline-syscalls")
    costs: list[PutCost] = []
    try:
        for kind, ops, work, base_prefix, size in kinds:
            log(f"syscalls: {ops} x {kind} PUT under strace, then the baseline's")
            before = slots.read()
            rimio = count_syscalls(node_pid, ops, work)
            delta = SlotCounters.delta(before, slots.read())
            baseline = count_syscalls(writer.proc.pid, ops,
                                      functools.partial(writer.write, base_prefix, size, ops))
            costs.append(PutCost(kind, ops, rimio, baseline, delta))
    finally:
        writer.close()
    return costs


# -- the run ------------------------------------------------------------------------------


def mb_per_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6 if seconds > 0 else 0.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def machine_facts(settings: Settings, workdir: Path) -> list[tuple[str, str]]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
    fs = "unknown"
    with contextlib.suppress(Exception):
        best = ""
        for part in psutil.disk_partitions(all=True):
            if str(workdir).startswith(part.mountpoint) and len(part.mountpoint) > len(best):
                best, fs = part.mountpoint, f"{part.fstype} on {part.device} ({part.mountpoint})"
    try:
        from importlib.metadata import version

        rimio_version = version("rimio")
    except Exception:
        rimio_version = "unknown"
    return [
        ("date (UTC)", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")),
        ("mode", "quick" if settings.quick else "full"),
        ("nproc", str(os.cpu_count())),
        ("cpu", cpu or "unknown"),
        ("memory", f"{psutil.virtual_memory().total / GIB:.1f} GiB"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("os", platform.platform()),
        ("file system", fs),
        ("rimio", f"{rimio_version} (git {commit})"),
        ("httpx", httpx.__version__),
        ("load average at start", load_average()),
    ]


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    ceilings: list[Ceiling] = field(default_factory=list)
    costs: list[PutCost] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cpu_note(cpu: CpuMeter, seconds: float) -> str:
    return (f"CPU: server {cpu.seconds / seconds * 100:.0f}%, client "
            f"{cpu.client_seconds / seconds * 100:.0f}% of one core")


def ratio_row(name: str, unit: str, value: float, ceiling: Ceiling | None,
              min_ratio: float | None, p50: float | None, p99: float | None, note: str,
              ok: bool = True) -> Row:
    """A Rimio row against `ceiling`; PASS when the ratio reaches `min_ratio` (and `ok`)."""
    if ceiling is None:
        return Row(name, unit, value, "", None, "— (info)", None, p50, p99, note)
    row = Row(name, unit, value, ceiling.name, ceiling.value, "— (info)", None, p50, p99, note)
    if min_ratio is not None and row.ratio is not None:
        row.target = f"ratio ≥ {min_ratio:g}"
        row.passed = row.ratio >= min_ratio and ok
    return row


def run(settings: Settings, workdir: Path) -> Results:
    res = Results()
    n = settings.small_count
    small_payloads = [random.Random(i).randbytes(SMALL_SIZE) for i in range(n)]
    small_payloads2 = [random.Random(10**6 + i).randbytes(SMALL_SIZE) for i in range(n)]
    big_chunks = make_chunks(BIG_SIZE, seed=64)
    big_etag = hashlib.sha256(b"".join(big_chunks)).hexdigest()

    # ---- ceilings: the durable baseline and the do-nothing app ----
    log("baseline: 4 KiB durable writes and reads")
    base = Baseline(workdir / "baseline")
    b_put_cold = base.small_put(small_payloads, n)
    b_put_over = base.small_put(small_payloads2, n)
    b_get = base.small_get(n)
    log("stack ceiling: 4 KiB PUT/GET against bare_app.py (quart-trio, no storage)")
    s_put, s_get = measure_stack_ceiling(small_payloads, n)

    def phase_ceiling(name: str, st: PhaseStats, note: str) -> Ceiling:
        if st.errors:
            note += f"; {st.errors} errors"
        return Ceiling(name, "objects/s", st.rate, st.pct(0.5), st.pct(0.99), note)

    c_base_cold = phase_ceiling(f"durable baseline, 4 KiB new files, {CLIENTS} threads",
                                b_put_cold, "temp file → fsync → rename → fsync directory")
    c_base_over = phase_ceiling(f"durable baseline, 4 KiB overwrites, {CLIENTS} threads",
                                b_put_over, "the same, renamed over the existing files")
    c_base_get = phase_ceiling(f"baseline, 4 KiB reads, {CLIENTS} threads", b_get,
                               "open + read, page cache")
    c_app_put = phase_ceiling(f"do-nothing app, 4 KiB PUT, {CLIENTS} clients", s_put,
                              "hypercorn + quart-trio, no storage (benchmarks/bare_app.py)")
    c_app_get = phase_ceiling(f"do-nothing app, 4 KiB GET, {CLIENTS} clients", s_get,
                              "the same app answers 4 KiB from memory")
    res.ceilings += [c_base_cold, c_base_over, c_base_get, c_app_put, c_app_get]

    # ---- rimio ----
    rimio_dir = workdir / "rimio"
    rimio_dir.mkdir()
    node = RimioProcess(rimio_dir, max_object_bytes=max(5 * GIB, settings.rss_size))
    client: RimioClient | None = None
    try:
        log("rimio: starting `rimio start`")
        node.start()
        log(f"rimio: up at {node.url} (pid {node.pid})")
        idle_rss = psutil.Process(node.pid).memory_info().rss
        client = RimioClient(node.url)
        slots = SlotCounters(client.clients[0])
        log("rimio: slot-cache counters "
            + (f"at {slots.path}" if slots.path else "not exposed by the node"))

        log(f"rimio: 4 KiB PUT x{n}, {CLIENTS} clients (fresh store)")
        slots_before = slots.read()
        with CpuMeter(node.pid) as cpu_cold:
            r_put_cold = client.small_put(small_payloads, n)
        slots_mid = slots.read()
        log(f"rimio: 4 KiB PUT x{n}, {CLIENTS} clients (overwrite)")
        with CpuMeter(node.pid) as cpu_over:
            r_put_over = client.small_put(small_payloads2, n)
        slots_after = slots.read()
        log(f"rimio: 4 KiB GET x{n}, {CLIENTS} clients")
        with CpuMeter(node.pid) as cpu_get:
            r_get = client.small_get(small_payloads2, n)

        # Baseline, Rimio and the client's loopback ceiling take turns, rep by rep, so
        # that other load on the machine hits all three alike.
        log(f"64 MiB PUT/GET x{settings.big_reps}: baseline, Rimio and loopback ceiling, "
            "interleaved")
        r_big_put: list[float] = []
        r_big_get: list[float] = []
        b_big_put: list[float] = []
        b_big_get: list[float] = []
        c_put: list[float] = []
        c_get: list[float] = []
        cpu_big_put = [0.0, 0.0]
        cpu_big_get = [0.0, 0.0]
        with helper_server("loopback_server.py", "--size", str(BIG_SIZE)) as ceiling_url:
            ceiling = RimioClient(ceiling_url)
            try:
                for rep in range(settings.big_reps):
                    b_big_put.append(base.big_put(big_chunks, rep))
                    with CpuMeter(node.pid) as cpu:
                        r_big_put.append(timed_put(client, f"bench/big/rep-{rep}", big_chunks))
                    cpu_big_put[0] += cpu.seconds
                    cpu_big_put[1] += cpu.client_seconds
                    c_put.append(timed_put(ceiling, "ceiling", big_chunks))
                for rep in range(settings.big_reps):
                    b_big_get.append(base.big_get(rep))
                    with CpuMeter(node.pid) as cpu:
                        r_big_get.append(timed_get(client, f"bench/big/rep-{rep}"))
                    cpu_big_get[0] += cpu.seconds
                    cpu_big_get[1] += cpu.client_seconds
                    c_get.append(timed_get(ceiling, "ceiling"))
            finally:
                ceiling.close()
        shutil.rmtree(base.root)
        head = client.clients[0].head("/api/v1/blobs/bench/big/rep-0")
        if head.headers.get("ETag", "").strip('"') != big_etag:
            raise RuntimeError(f"64 MiB object has ETag {head.headers.get('ETag')}, "
                               f"expected the SHA-256 {big_etag}")

        res.costs = measure_put_costs(node.pid, client, slots, settings, small_payloads,
                                      small_payloads2, big_chunks, workdir)

        size = settings.rss_size
        label = f"{size // MIB} MiB" if size < GIB else f"{size // GIB} GiB"
        log(f"rimio: {label} PUT with RSS sampling (node after the other phases)")
        slots_open = count_slot_dirs(rimio_dir / "data")
        used = rss_check(client, node.pid, big_chunks, size, "bench/huge", with_get=False)
    except BaseException:
        tail = "\n".join(node.log().splitlines()[-40:])
        log(f"rimio: benchmark failed; last lines of the node's log:\n{tail}")
        raise
    finally:
        if client is not None:
            client.close()
        rc = node.stop()
        log(f"rimio: stopped (exit status {rc})")
    if rc != 0:
        res.notes.append(f"`rimio start` exited with status {rc} after SIGTERM (expected 0).")

    log(f"rimio: {label} PUT and GET with RSS sampling on a fresh node")
    fresh_dir = workdir / "rimio-fresh"
    fresh_dir.mkdir()
    fresh = run_fresh_rss_check(fresh_dir, big_chunks, size)

    # ---- 64 MiB ceilings ----
    def big_ceiling(name: str, times: list[float], note: str) -> Ceiling:
        return Ceiling(name, "MB/s", mb_per_s(BIG_SIZE, statistics.median(times)),
                       statistics.median(times), percentile(times, 0.99),
                       f"median of {len(times)}; {note}")

    c_base_bput = big_ceiling("durable baseline, 64 MiB write", b_big_put,
                              "1 MiB writes, fsync, rename, fsync directory")
    c_base_bget = big_ceiling("baseline, 64 MiB read", b_big_get, "1 MiB reads, page cache")
    c_loop_put = big_ceiling("httpx vs an in-memory server, 64 MiB PUT", c_put,
                             "the client's loopback ceiling (benchmarks/loopback_server.py)")
    c_loop_get = big_ceiling("httpx vs an in-memory server, 64 MiB GET", c_get,
                             "the same server answers from memory")
    res.ceilings += [c_base_bput, c_base_bget, c_loop_put, c_loop_get]

    # ---- rows ----
    errs = r_put_cold.errors + r_put_over.errors + r_get.errors
    if errs:
        res.notes.append(f"{errs} of the 4 KiB requests failed (non-2xx or wrong bytes); "
                         "they are not counted in the objects/s figures and the rows MISS.")

    def small_row(name: str, r: PhaseStats, ceiling: Ceiling, min_ratio: float | None,
                  note: str) -> Row:
        if r.errors:
            note += f"; {r.errors} errors"
        return ratio_row(name, "objects/s", r.rate, ceiling, min_ratio, r.pct(0.5),
                         r.pct(0.99), note, ok=r.errors == 0)

    cold_note = cpu_note(cpu_cold, r_put_cold.seconds) + "; " + slots_note(
        SlotCounters.delta(slots_before, slots_mid), n)
    over_note = cpu_note(cpu_over, r_put_over.seconds) + "; " + slots_note(
        SlotCounters.delta(slots_mid, slots_after), n)
    put_cold = f"4 KiB PUT, {CLIENTS} clients, new objects (fresh store)"
    put_over = f"4 KiB PUT, {CLIENTS} clients, overwrites (slots warm)"
    res.rows += [
        small_row(put_cold, r_put_cold, c_base_cold, TARGET_SMALL_PUT_RATIO, cold_note),
        small_row(put_over, r_put_over, c_base_over, TARGET_SMALL_PUT_RATIO, over_note),
        small_row(put_cold, r_put_cold, c_app_put, None,
                  "what storage costs beyond the HTTP stack"),
        small_row(put_over, r_put_over, c_app_put, None,
                  "what storage costs beyond the HTTP stack"),
        small_row(f"4 KiB GET, {CLIENTS} clients", r_get, c_app_get, TARGET_SMALL_GET_RATIO,
                  cpu_note(cpu_get, r_get.seconds) + f"; {r_get.rate / c_base_get.value:.3f} "
                  "of the baseline's plain file reads"),
    ]

    def big_row(name: str, r: list[float], ceiling: Ceiling, loop: Ceiling, min_ratio: float,
                cpu_s: list[float]) -> Row:
        rm = mb_per_s(BIG_SIZE, statistics.median(r))
        note = (f"median of {len(r)} (p99 = the slowest); "
                f"{rm / loop.value * 100:.0f}% of the client's loopback ceiling "
                f"({loop.value:,.0f} MB/s); CPU: server {cpu_s[0] / sum(r) * 100:.0f}%, "
                f"client {cpu_s[1] / sum(r) * 100:.0f}% of one core")
        return ratio_row(name, "MB/s", rm, ceiling, min_ratio, statistics.median(r),
                         percentile(r, 0.99), note)

    res.rows.append(big_row("64 MiB PUT, 1 client", r_big_put, c_base_bput, c_loop_put,
                            TARGET_BIG_PUT_RATIO, cpu_big_put))
    res.rows.append(big_row("64 MiB GET, 1 client", r_big_get, c_base_bget, c_loop_get,
                            TARGET_BIG_GET_RATIO, cpu_big_get))

    rss_target = f"< {TARGET_RSS_BYTES // MIB} MiB"
    res.rows.append(Row(f"peak server RSS during a {label} PUT, fresh node", "MiB",
                        fresh.put_peak / MIB, "", None, rss_target,
                        fresh.put_peak < TARGET_RSS_BYTES, None, None,
                        f"{fresh.put_start / MIB:.0f} MiB before the PUT; {fresh.put_samples} "
                        f"samples; PUT at {mb_per_s(size, fresh.put_seconds):.0f} MB/s"))
    res.rows.append(Row(f"peak server RSS during a {label} PUT, node after the phases above",
                        "MiB", used.put_peak / MIB, "", None, rss_target,
                        used.put_peak < TARGET_RSS_BYTES, None, None,
                        f"{slots_open} slot directories (the node keeps at most "
                        "storage.max_open_slots of their databases open); idle RSS at start "
                        f"{idle_rss / MIB:.0f} MiB, {used.put_start / MIB:.0f} MiB before this "
                        f"PUT; {used.put_samples} samples; PUT at "
                        f"{mb_per_s(size, used.put_seconds):.0f} MB/s"))
    if fresh.get_peak is not None:
        res.rows.append(Row(f"peak server RSS during a {label} GET, fresh node", "MiB",
                            fresh.get_peak / MIB, "", None, "— (info)", None, None, None,
                            f"{fresh.get_samples} samples; GET at "
                            f"{mb_per_s(size, fresh.get_seconds):.0f} MB/s"))
    res.notes.append("3-node replicated figures: not measured; the replicated write path "
                     "has not landed.")
    res.notes.append(f"Load average at the end of the run: {load_average()}. Other work on "
                     "the machine during the run lowers the figures; compare with the start "
                     "value.")
    if settings.quick:
        res.notes.append("Quick mode: fewer objects, repetitions and traced PUTs, and a "
                         "256 MiB object for the RSS check instead of 1 GiB; use the full run "
                         "for the committed figures.")
    return res


# -- report -------------------------------------------------------------------------------


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"
    return f"{text} {unit}".rstrip()


def fmt_ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:  # None or NaN
        return "—"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f} ms"
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def fmt_per_op(counts: SyscallCounts | str, which: Callable[[SyscallCounts], float]) -> str:
    return counts if isinstance(counts, str) else f"{which(counts):,.1f}"


def top_calls(counts: SyscallCounts | str) -> str:
    if isinstance(counts, str):
        return "—"
    return ", ".join(f"{name} {per:.1f}" for name, per in counts.top(6))


def slot_cell(slots: dict[str, int] | str, key: str, ops: int) -> str:
    if isinstance(slots, str):
        return slots
    return f"{slots[key] / ops:.2f}" if key in slots else "—"


def render(facts: list[tuple[str, str]], res: Results, settings: Settings) -> str:
    lines = ["# Rimio single-node benchmark", "",
             "Generated by `python benchmarks/bench_single_node.py"
             + (" --quick" if settings.quick else "") + "`. One `rimio start` process "
             "(1 node, 1 replica) on 127.0.0.1, driven by httpx from the benchmark process. "
             "Every Rimio figure stands beside a ceiling measured in the same run: a "
             "plain-Python durable-write baseline on the same file system (temp file → "
             "fsync → rename → fsync directory; read = open + read), a do-nothing "
             "quart-trio app (the HTTP stack's own cost) or the client's loopback ceiling.",
             "", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts]
    lines += ["", "## Results", "",
              "| measurement | Rimio | p50 | p99 | ceiling | ceiling value | ratio | target "
              "| result | notes |",
              "|---|---:|---:|---:|---|---:|---:|---|---|---|"]
    for row in res.rows:
        ratio = row.ratio
        result = "—" if row.passed is None else ("PASS" if row.passed else "**MISS**")
        lines.append(
            f"| {row.name} | {fmt(row.rimio, row.unit)} | {fmt_ms(row.p50)} | "
            f"{fmt_ms(row.p99)} | {row.ceiling or '—'} | {fmt(row.ceiling_value, row.unit)} | "
            f"{'—' if ratio is None else f'{ratio:.2f}'} | {row.target} | {result} | "
            f"{row.note} |")
    lines += ["", "## Ceilings measured in this run", "",
              "| ceiling | rate | p50 | p99 | notes |", "|---|---:|---:|---:|---|"]
    lines += [f"| {c.name} | {fmt(c.value, c.unit)} | {fmt_ms(c.p50)} | {fmt_ms(c.p99)} | "
              f"{c.note} |" for c in res.ceilings]
    lines += ["", "## System calls and slot databases per PUT", "",
              "| PUT kind | PUTs | Rimio fsync+fdatasync / PUT | Rimio file calls / PUT | "
              "Rimio syscalls / PUT | baseline fsyncs / write | baseline syscalls / write | "
              "slot DB opens / PUT | slot DB evictions / PUT | "
              "Rimio's most frequent calls per PUT |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in res.costs:
        lines.append(
            f"| {c.kind} | {c.ops} | {fmt_per_op(c.rimio, lambda k: k.syncs_per_op)} | "
            f"{fmt_per_op(c.rimio, lambda k: k.file_calls_per_op)} | "
            f"{fmt_per_op(c.rimio, lambda k: k.total_per_op)} | "
            f"{fmt_per_op(c.baseline, lambda k: k.syncs_per_op)} | "
            f"{fmt_per_op(c.baseline, lambda k: k.total_per_op)} | "
            f"{slot_cell(c.slots, 'opens', c.ops)} | {slot_cell(c.slots, 'evictions', c.ops)} | "
            f"{top_calls(c.rimio)} |")
    lines += ["", "## Method", "",
              f"- 4 KiB: {settings.small_count} distinct objects per phase, {CLIENTS} threads, "
              "each with its own kept-alive httpx connection (Rimio) or doing its own file "
              "writes (baseline). \"Fresh store\" PUTs create the objects (and, for Rimio, "
              "most slot databases); \"overwrites\" PUT new bytes to the same paths. GET "
              "reads every object back and checks the bytes.",
              f"- 64 MiB: {settings.big_reps} repetitions, median MB/s (10^6 bytes/s). The PUT "
              "body is streamed from a generator of 1 MiB chunks with an explicit "
              "Content-Length; GET is streamed with `iter_bytes`. The baseline writes and "
              "reads the same bytes in 1 MiB chunks.",
              "- Latencies: p50 and p99 are nearest-rank percentiles of the per-request "
              "times seen by the client (for 64 MiB, of the few repetitions: p99 is then "
              "the slowest run).",
              "- RSS: psutil samples the `rimio` process every 10 ms while the big body, "
              "generated on the fly from 64 distinct 1 MiB chunks, is streamed in: once on "
              "a fresh node (a second `rimio start`), once on the node that served the "
              "phases above (its slot databases stay open).",
              "- Ceilings: the same httpx clients against `benchmarks/loopback_server.py` "
              "(raw sockets, bytes from memory) bound what any server can show for 64 MiB, "
              "and against `benchmarks/bare_app.py` (a do-nothing hypercorn + quart-trio "
              "app) bound what Rimio's HTTP stack can show for 4 KiB requests.",
              f"- System calls: `strace -f -c` is attached to every thread of the `rimio` "
              f"process for {settings.traced_small} 4 KiB PUTs to new paths ({CLIENTS} "
              f"clients), then {settings.traced_small} overwrites of them, then "
              f"{settings.traced_big} PUTs of 64 MiB, and detached after each (benchmarks/"
              "syscalls.py). All calls are counted, including the event loop's, the worker "
              "threads' hand-offs (futex, which grow when strace slows the threads) and the "
              "idle background tasks' (a few per second); \"file calls\" are those on files "
              "and directories (open, stat, read/write, fcntl, rename, unlink, mkdir, the "
              "fsync family...). The baseline's durable writes "
              "are counted the same way in a child process (benchmarks/durable_writer.py), "
              "one write at a time. Throughput under strace is not reported. Slot-database "
              "opens and evictions come from the node's counters, read before and after each "
              "window, when the node publishes them on "
              + " or ".join(f"`{p}`" for p in STATS_PATHS) + ".",
              "- Reads of both Rimio and the baseline come from the page cache (the data "
              "was just written); the client runs on the same 2 cores as the server.",
              "- Server CPU is the `rimio` process's user+system CPU time over the phase's "
              "wall time."]
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="fewer objects and repetitions, a 256 MiB RSS check (< 2 minutes)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "single-node.md",
                        help="Markdown report to write (default: benchmarks/single-node.md)")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / ".work",
                        help="parent of the temporary data directory")
    args = parser.parse_args(argv)
    settings = Settings.for_mode(args.quick)
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=args.workdir))
    try:
        facts = machine_facts(settings, workdir)
        results = run(settings, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            args.workdir.rmdir()  # only when empty
    report = render(facts, results, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
