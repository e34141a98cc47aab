"""Single-node Rimio benchmark, side by side with a plain-Python durable-write baseline.

Run it as::

    python benchmarks/bench_single_node.py [--quick] [--out benchmarks/single-node.md]

In one run it starts a real ``rimio start`` process on a loopback port (data in a
temporary directory under ``benchmarks/.work/``, removed afterwards) and measures:

* 4 KiB PUT with 8 concurrent clients (objects/s): first writes into a fresh store,
  then overwrites of the same paths (every slot database already open);
* 4 KiB GET with 8 concurrent clients (objects/s);
* 64 MiB PUT and GET (MB/s, median of a few repetitions);
* the peak RSS of the rimio process while a 1 GiB body (256 MiB with ``--quick``),
  generated on the fly, is PUT, and while it is read back with GET.

The baseline does the same durable work in plain Python in the same run, on the same
file system, with the same sizes and the same concurrency (threads): for each object,
write the bytes to a temp file, fsync, rename, fsync the directory; read back is open +
read. The report is a Markdown table with ratios Rimio/baseline, the targets of issue
2 item 9 and PASS/MISS. Figures are reported as measured: there are no timed
assertions, and the exit status is 0 unless the benchmark itself crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
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

TARGET_BIG_RATIO = 0.5
TARGET_SMALL_PUT_OPS = 300.0
TARGET_RSS_BYTES = 200 * MIB


@dataclass(frozen=True)
class Settings:
    quick: bool
    small_count: int  # objects per 4 KiB phase, split over CLIENTS threads
    big_reps: int
    rss_size: int

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, small_count=400, big_reps=2, rss_size=256 * MIB)
        return cls(quick=False, small_count=2000, big_reps=5, rss_size=1 * GIB)


@dataclass
class Row:
    name: str
    unit: str
    rimio: float
    baseline: float | None
    target: str
    passed: bool | None  # None: informational, no target
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.rimio / self.baseline


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
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
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


def small_path(i: int) -> str:
    return f"bench/small/obj-{i:06d}"


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

    def small_put(self, payloads: Sequence[bytes], count: int) -> PhaseStats:
        def op(w: int, i: int) -> bool:
            r = self.clients[w].put(f"/api/v1/blobs/{small_path(i)}", content=payloads[i])
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


def run(settings: Settings, workdir: Path) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    n = settings.small_count
    small_payloads = [random.Random(i).randbytes(SMALL_SIZE) for i in range(n)]
    small_payloads2 = [random.Random(10**6 + i).randbytes(SMALL_SIZE) for i in range(n)]
    big_chunks = make_chunks(BIG_SIZE, seed=64)
    big_etag = hashlib.sha256(b"".join(big_chunks)).hexdigest()

    # ---- baseline ----
    log("baseline: 4 KiB durable writes and reads")
    base = Baseline(workdir / "baseline")
    b_put_cold = base.small_put(small_payloads, n)
    b_put_over = base.small_put(small_payloads2, n)
    b_get = base.small_get(n)
    log("stack ceiling: 4 KiB PUT/GET against bare_app.py (quart-trio, no storage)")
    s_put, s_get = measure_stack_ceiling(small_payloads, n)

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

        log(f"rimio: 4 KiB PUT x{n}, {CLIENTS} clients (fresh store)")
        with CpuMeter(node.pid) as cpu_cold:
            r_put_cold = client.small_put(small_payloads, n)
        log(f"rimio: 4 KiB PUT x{n}, {CLIENTS} clients (overwrite)")
        with CpuMeter(node.pid) as cpu_over:
            r_put_over = client.small_put(small_payloads2, n)
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
        notes.append(f"`rimio start` exited with status {rc} after SIGTERM (expected 0).")

    log(f"rimio: {label} PUT and GET with RSS sampling on a fresh node")
    fresh_dir = workdir / "rimio-fresh"
    fresh_dir.mkdir()
    fresh = run_fresh_rss_check(fresh_dir, big_chunks, size)

    # ---- rows ----
    errs = r_put_cold.errors + r_put_over.errors + r_get.errors
    if errs:
        notes.append(f"{errs} of the 4 KiB requests failed (non-2xx or wrong bytes); "
                     "they are not counted in the objects/s figures.")

    def small_row(name: str, r: PhaseStats, b: PhaseStats, target_ops: float | None,
                  cpu: CpuMeter) -> Row:
        note = (f"p50 {r.pct(0.5) * 1e3:.1f} ms, p99 {r.pct(0.99) * 1e3:.1f} ms; CPU: server "
                f"{cpu.seconds / r.seconds * 100:.0f}%, client "
                f"{cpu.client_seconds / r.seconds * 100:.0f}% of one core")
        if r.errors:
            note += f"; {r.errors} errors"
        if target_ops is None:
            return Row(name, "objects/s", r.rate, b.rate, "—", None, note)
        return Row(name, "objects/s", r.rate, b.rate, f"≥ {target_ops:.0f} objects/s",
                   r.rate >= target_ops and r.errors == 0, note)

    rows.append(small_row(f"4 KiB PUT, {CLIENTS} clients, new objects (fresh store)",
                          r_put_cold, b_put_cold, TARGET_SMALL_PUT_OPS, cpu_cold))
    rows.append(small_row(f"4 KiB PUT, {CLIENTS} clients, overwrites (slots warm)",
                          r_put_over, b_put_over, TARGET_SMALL_PUT_OPS, cpu_over))
    rows.append(small_row(f"4 KiB GET, {CLIENTS} clients", r_get, b_get, None, cpu_get))
    for verb, st in (("PUT", s_put), ("GET", s_get)):
        rows.append(Row(f"4 KiB {verb}, {CLIENTS} clients vs a do-nothing quart-trio app",
                        "objects/s", st.rate, None, "— (info)", None,
                        "the HTTP stack's ceiling: hypercorn + quart-trio, handler does no "
                        f"storage work (benchmarks/bare_app.py); p50 {st.pct(0.5) * 1e3:.1f} ms"
                        + (f"; {st.errors} errors" if st.errors else "")))

    def big_row(name: str, r: list[float], b: list[float], cpu_s: list[float],
                ceiling: list[float]) -> Row:
        rm, bm = mb_per_s(BIG_SIZE, statistics.median(r)), mb_per_s(BIG_SIZE, statistics.median(b))
        cm = mb_per_s(BIG_SIZE, statistics.median(ceiling))
        note = (f"median of {len(r)}; Rimio runs {min(r):.2f} to {max(r):.2f} s; "
                f"{rm / cm * 100:.0f}% of the client's loopback ceiling ({cm:,.0f} MB/s); "
                f"CPU: server {cpu_s[0] / sum(r) * 100:.0f}%, client "
                f"{cpu_s[1] / sum(r) * 100:.0f}% of one core")
        ratio = rm / bm if bm else 0.0
        return Row(name, "MB/s", rm, bm, f"ratio ≥ {TARGET_BIG_RATIO}",
                   ratio >= TARGET_BIG_RATIO, note)

    rows.append(big_row("64 MiB PUT, 1 client", r_big_put, b_big_put, cpu_big_put, c_put))
    rows.append(big_row("64 MiB GET, 1 client", r_big_get, b_big_get, cpu_big_get, c_get))
    for verb, times in (("PUT", c_put), ("GET", c_get)):
        rows.append(Row(f"64 MiB {verb}, httpx client vs a trivial in-memory server", "MB/s",
                        mb_per_s(BIG_SIZE, statistics.median(times)), None, "— (info)", None,
                        "the client's loopback ceiling: no disk, no framework "
                        "(benchmarks/loopback_server.py)"))
    rss_target = f"< {TARGET_RSS_BYTES // MIB} MiB"
    rows.append(Row(f"peak server RSS during a {label} PUT, fresh node", "MiB",
                    fresh.put_peak / MIB, None, rss_target, fresh.put_peak < TARGET_RSS_BYTES,
                    f"{fresh.put_start / MIB:.0f} MiB before the PUT; {fresh.put_samples} "
                    f"samples; PUT at {mb_per_s(size, fresh.put_seconds):.0f} MB/s"))
    rows.append(Row(f"peak server RSS during a {label} PUT, node after the phases above",
                    "MiB", used.put_peak / MIB, None, rss_target,
                    used.put_peak < TARGET_RSS_BYTES,
                    f"{slots_open} slot directories (the node keeps at most "
                    "storage.max_open_slots = 512 of their databases open); idle RSS at start "
                    f"{idle_rss / MIB:.0f} MiB, {used.put_start / MIB:.0f} MiB before this PUT; "
                    f"{used.put_samples} samples; PUT at "
                    f"{mb_per_s(size, used.put_seconds):.0f} MB/s"))
    if fresh.get_peak is not None:
        rows.append(Row(f"peak server RSS during a {label} GET, fresh node", "MiB",
                        fresh.get_peak / MIB, None, "— (info)", None,
                        f"{fresh.get_samples} samples; GET at "
                        f"{mb_per_s(size, fresh.get_seconds):.0f} MB/s"))
    notes.append(f"Load average at the end of the run: {load_average()}. Other work on the "
                 "machine during the run lowers the figures; compare with the start value.")
    if settings.quick:
        notes.append("Quick mode: fewer objects and repetitions, and a 256 MiB object for the "
                     "RSS check instead of 1 GiB; use the full run for the committed figures.")
    return rows, notes


# -- report -------------------------------------------------------------------------------


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"
    return f"{text} {unit}".rstrip()


def render(facts: list[tuple[str, str]], rows: list[Row], notes: list[str],
           settings: Settings) -> str:
    lines = ["# Rimio single-node benchmark", "",
             "Generated by `python benchmarks/bench_single_node.py"
             + (" --quick" if settings.quick else "") + "`. One `rimio start` process "
             "(1 node, 1 replica) on 127.0.0.1, driven by httpx from the benchmark process; "
             "the baseline does the same durable work in plain Python in the same run, on "
             "the same file system (temp file → fsync → rename → fsync directory; read = "
             "open + read).", "",
             "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts]
    lines += ["", "## Results", "",
              "| measurement | Rimio | baseline | ratio | target | result | notes |",
              "|---|---:|---:|---:|---|---|---|"]
    for row in rows:
        ratio = row.ratio
        result = "—" if row.passed is None else ("PASS" if row.passed else "**MISS**")
        lines.append(
            f"| {row.name} | {fmt(row.rimio, row.unit)} | {fmt(row.baseline, row.unit)} | "
            f"{'—' if ratio is None else f'{ratio:.2f}'} | {row.target} | {result} | "
            f"{row.note} |"
        )
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
              "- RSS: psutil samples the `rimio` process every 10 ms while the big body, "
              "generated on the fly from 64 distinct 1 MiB chunks, is streamed in: once on "
              "a fresh node (a second `rimio start`), once on the node that served the "
              "phases above (its slot databases stay open).",
              "- Ceilings (info rows): the same httpx clients against "
              "`benchmarks/loopback_server.py` (raw sockets, bytes from memory) bound what "
              "any server can show for 64 MiB, and against `benchmarks/bare_app.py` (a "
              "do-nothing hypercorn + quart-trio app) bound what Rimio's HTTP stack can "
              "show for 4 KiB requests.",
              "- Reads of both Rimio and the baseline come from the page cache (the data "
              "was just written); the client runs on the same 2 cores as the server.",
              "- Server CPU is the `rimio` process's user+system CPU time over the phase's "
              "wall time."]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and a 256 MiB RSS check (< 1 minute)")
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
        rows, notes = run(settings, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            args.workdir.rmdir()  # only when empty
    report = render(facts, rows, notes, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
