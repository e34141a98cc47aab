"""Helpers for process tests: real `rimio` processes on loopback ports.

Everything here is synchronous and bounded: every wait has a timeout, every
process started through `ProcessPool` is killed when the test ends (the
`rimio_pool` fixture in conftest.py does that), and each process writes its
stdout and stderr to files (never pipes, so a chatty node cannot block on a
full pipe) that the failure messages quote.

Typical use, one node::

    nodes = make_nodes(tmp_path, 1)
    conf = write_config(tmp_path / "rimio.yaml", cluster_config(nodes, replicas=1))
    node = rimio_pool.start_node(conf, nodes[0])      # waits for healthz
    httpx.put(f"{node.url}/api/v1/blobs/a", content=b"x")

and a cluster: `rimio_pool.start_cluster(conf, nodes)` starts every node
first and only then waits for all of them.

The command defaults to the `rimio` console script next to the running
interpreter; set `RIMIO_CMD` (e.g. `"/opt/venv/bin/rimio"`) to test another
installation.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
BANNER = re.compile(r"^rimio \S+: node (?P<node>\S+) serving on (?P<url>http://\S+)$", re.M)
TEMP_PREFIX = ".tmp-"
# rimio.storage.meta.GROUPS: the rows of slot s are in <disk>/meta/group-<s % GROUPS>.sqlite3
GROUPS = 64


def rimio_command() -> list[str]:
    """The argv prefix that runs the `rimio` CLI."""
    override = os.environ.get("RIMIO_CMD")
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "rimio"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "rimio.cli"]


# -- ports and configs ----------------------------------------------------------


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct TCP ports that were free a moment ago (bound to 0, then closed)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
    return ports


def free_port(host: str = HOST) -> int:
    return free_ports(1, host)[0]


@dataclass(frozen=True)
class NodeDef:
    """One node of a test cluster: its id, its one port and its disk."""

    node_id: str
    port: int
    disk: Path
    host: str = HOST

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"


def make_nodes(base: Path, count: int, prefix: str = "node") -> list[NodeDef]:
    """`count` nodes `<prefix>-1..N` on free ports with disks `base/<id>/disk` (not created)."""
    ports = free_ports(count)
    return [
        NodeDef(f"{prefix}-{i + 1}", port, base / f"{prefix}-{i + 1}" / "disk")
        for i, port in enumerate(ports)
    ]


def cluster_config(
    nodes: Sequence[NodeDef],
    *,
    name: str = "proc-test",
    replicas: int | None = None,
    min_write_replicas: int | None = None,
    total_slots: int | None = None,
    storage: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config (RFC 0006) of a cluster of `nodes`, as a dict (edit it before writing).

    Several nodes need a cluster key: set `cluster.key_file` (see `write_key`)."""
    replication: dict[str, Any] = {}
    if replicas is not None:
        replication["replicas"] = replicas
    if min_write_replicas is not None:
        replication["min_write_replicas"] = min_write_replicas
    if total_slots is not None:
        replication["total_slots"] = total_slots
    initial: dict[str, Any] = {
        "nodes": [
            {
                "node_id": n.node_id,
                "bind_addr": n.addr,
                "advertise_addr": n.addr,
                "disks": [{"path": str(n.disk)}],
            }
            for n in nodes
        ]
    }
    if replication:
        initial["replication"] = replication
    config: dict[str, Any] = {"cluster": {"name": name}, "initial_cluster": initial}
    if storage is not None:
        config["storage"] = storage
    if server is not None:
        config["server"] = server
    return config


def single_node_config(
    node: NodeDef,
    *,
    storage: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return cluster_config([node], replicas=1, min_write_replicas=1, storage=storage,
                          server=server)


def write_key(path: Path) -> Path:
    """Write a fresh one-key cluster key file (mode 0600) at `path`; return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(os.urandom(32).hex() + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def write_config(path: Path, config: dict[str, Any] | str) -> Path:
    """Write a config (a dict, dumped as YAML, or raw text) to `path`; return `path`."""
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- processes ------------------------------------------------------------------


class RimioProcessError(AssertionError):
    pass


@dataclass
class RimioProcess:
    """One `rimio` process (restartable) with its output in files under `log_dir`."""

    args: list[str]
    log_dir: Path
    name: str
    url: str | None = None
    node_id: str | None = None
    cwd: Path | None = None
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    runs: int = 0

    # -- files --

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.{self.runs}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.{self.runs}.stderr"

    def stdout(self) -> str:
        return _read_text(self.stdout_path)

    def stderr(self) -> str:
        """stderr of the current (or last) run."""
        return _read_text(self.stderr_path)

    def describe(self, tail: int = 4000) -> str:
        rc = None if self.popen is None else self.popen.poll()
        return (f"{self.name} (run {self.runs}, pid "
                f"{None if self.popen is None else self.popen.pid}, returncode {rc})\n"
                f"--- stderr tail ---\n{self.stderr()[-tail:]}\n"
                f"--- stdout tail ---\n{self.stdout()[-tail:]}")

    # -- life cycle --

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> RimioProcess:
        if self.running():
            raise RimioProcessError(f"{self.name} is already running")
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.cwd, env=env,
            )
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT, banner: bool = True) -> RimioProcess:
        """Wait until healthz answers 200 (and, with `banner`, the ready line is on stderr)."""
        assert self.url is not None, "no url to probe"
        deadline = time.monotonic() + timeout
        last: str = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.running():
                    raise RimioProcessError(f"exited before serving: {self.describe()}")
                try:
                    r = client.get(f"{self.url}/api/v1/healthz")
                    if r.status_code == 200:
                        break
                    last = f"healthz answered {r.status_code}: {r.text[:200]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise RimioProcessError(f"not healthy after {timeout}s ({last}): "
                                            f"{self.describe()}")
                time.sleep(0.05)
            while banner:
                m = BANNER.search(self.stderr())
                if m is not None:
                    if self.node_id is not None and m["node"] != self.node_id:
                        raise RimioProcessError(f"banner names {m['node']}: {self.describe()}")
                    if m["url"] != self.url:
                        raise RimioProcessError(f"banner url {m['url']} != {self.url}")
                    break
                if time.monotonic() > deadline:
                    raise RimioProcessError(f"no ready line on stderr: {self.describe()}")
                time.sleep(0.02)
        return self

    def send_signal(self, signum: int) -> None:
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.popen is not None, "not started"
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RimioProcessError(f"did not exit within {timeout}s: {self.describe()}") from None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `signum` and wait for the exit; returns the exit status."""
        self.send_signal(signum)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (no cleanup of any kind in the process) and reap."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)

    def restart(self, signum: int = signal.SIGTERM, wait_ready: bool = True) -> RimioProcess:
        """Stop (SIGKILL: no grace at all) and start again on the same data."""
        if signum == signal.SIGKILL:
            self.kill()
        elif self.running():
            rc = self.stop(signum)
            if rc != 0:
                raise RimioProcessError(f"exit status {rc} on {signum}: {self.describe()}")
        self.start()
        return self.wait_ready() if wait_ready else self


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class ProcessPool:
    """Starts `rimio` processes for one test and kills every one of them in `close`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[RimioProcess] = []

    def spawn(self, args: Sequence[str], name: str, *, url: str | None = None,
              node_id: str | None = None, cwd: Path | None = None) -> RimioProcess:
        """Start `rimio <args...>` without waiting for anything."""
        proc = RimioProcess([*rimio_command(), *args], self.log_dir, name, url=url,
                            node_id=node_id, cwd=cwd)
        self.procs.append(proc)
        return proc.start()

    def start_node(self, conf: Path, node: NodeDef, *, wait: bool = True) -> RimioProcess:
        proc = self.spawn(["start", "--conf", str(conf), "--node", node.node_id],
                          node.node_id, url=node.url, node_id=node.node_id)
        return proc.wait_ready() if wait else proc

    def start_single(self, node: NodeDef, *, storage: dict[str, Any] | None = None,
                     server: dict[str, Any] | None = None) -> tuple[Path, RimioProcess]:
        """Write a 1-node, 1-replica config beside the node's disk and start the node."""
        conf = write_config(node.disk.parent / "rimio.yaml",
                            single_node_config(node, storage=storage, server=server))
        return conf, self.start_node(conf, node)

    def start_cluster(self, conf: Path, nodes: Sequence[NodeDef]) -> list[RimioProcess]:
        procs = [self.start_node(conf, n, wait=False) for n in nodes]
        for p in procs:
            p.wait_ready()
        return procs

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


def run_rimio(args: Sequence[str], *, cwd: Path | None = None,
              timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run `rimio <args...>` to completion (killed after `timeout`) and capture its output."""
    return subprocess.run([*rimio_command(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


# -- waiting on a cluster ------------------------------------------------------

# Membership knobs faster than memberlist's LAN profile, so that cluster tests
# stay short; the protocol paths exercised are the same.
FAST_MEMBERSHIP: dict[str, float] = {
    "probe_interval": 0.4, "probe_timeout": 0.2, "gossip_interval": 0.1,
    "push_pull_interval": 5.0, "reconnect_interval": 1.0}



def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `pred` every 0.2 s; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting until {what}")


def member_view(node: NodeDef) -> dict[str, dict[str, Any]]:
    """`node`'s `/api/v1/nodes`, by node id ({} when it does not answer)."""
    try:
        r = httpx.get(node.url + "/api/v1/nodes", timeout=2)
    except httpx.HTTPError:
        return {}
    return {n["node_id"]: n for n in r.json()["nodes"]}


def all_see(observers: Sequence[NodeDef], ids: Sequence[str], status: str) -> bool:
    """Whether every observer sees every other node of `ids` with `status`."""
    for obs in observers:
        view = member_view(obs)
        if any(view.get(i, {}).get("status") != status for i in ids if i != obs.node_id):
            return False
    return True


# -- looking at a node's disk ---------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Every entry under `root` (relative path -> 'dir' / 'file <size>' / 'link')."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p.relative_to(root))] = "link" if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = f"file {p.lstat().st_size}"
    return out


def temp_files(disk: Path) -> list[str]:
    """Names under `disk` that start with the temp prefix (leftovers of unfinished writes)."""
    return sorted(rel for rel in tree(disk) if Path(rel).name.startswith(TEMP_PREFIX))


@contextlib.contextmanager
def open_meta(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a metadata database (safe while the node runs)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class PartRow:
    path: str
    generation: int
    part_index: int
    sha256: str
    size_bytes: int
    local_path: str | None  # None: an inline part, its bytes in `data`
    superseded: bool
    data: bytes | None = None


def meta_db(slot_dir: Path) -> Path:
    """The group database that holds the rows of the slot whose directory is `slot_dir`."""
    return slot_dir.parent.parent / "meta" / f"group-{int(slot_dir.name) % GROUPS:02d}.sqlite3"


def slot_dirs(disk: Path) -> list[Path]:
    """The directories of the disk's slots: those that exist, and those of slots with
    rows in a group database but no directory (no part files: inline objects only)."""
    found: set[int] = set()
    slots = disk / "slots"
    if slots.is_dir():
        found.update(int(p.name) for p in slots.iterdir() if p.is_dir() and p.name.isdigit())
    for db_path in sorted((disk / "meta").glob("group-*.sqlite3")):
        with open_meta(db_path) as db:
            found.update(int(r[0]) for r in db.execute("SELECT DISTINCT slot_id FROM file_entries"))
    return [slots / str(slot) for slot in sorted(found)]


def part_rows(slot_dir: Path) -> list[PartRow]:
    """The slot's `file_entries` part rows; `superseded` when their head is no longer current."""
    with open_meta(meta_db(slot_dir)) as db:
        rows = db.execute(
            "SELECT p.path, p.generation, p.part_index, p.sha256, p.size_bytes, p.local_path,"
            " COALESCE(h.is_current, 0), p.inline_data FROM file_entries p"
            " LEFT JOIN file_entries h"
            " ON h.slot_id = p.slot_id AND h.path = p.path AND h.generation = p.generation"
            " AND h.head_sha256 = p.head_sha256 AND h.entry_kind IN ('meta', 'tombstone')"
            " WHERE p.entry_kind = 'part' AND p.slot_id = ?",
            (int(slot_dir.name),),
        ).fetchall()
    return [PartRow(r[0], int(r[1]), int(r[2]), r[3], int(r[4]), r[5], not r[6],
                    None if r[7] is None else bytes(r[7])) for r in rows]


def count_entries(slot_dir: Path, kind: str) -> int:
    with open_meta(meta_db(slot_dir)) as db:
        row = db.execute("SELECT COUNT(*) FROM file_entries WHERE entry_kind = ? AND slot_id = ?",
                         (kind, int(slot_dir.name))).fetchone()
    return int(row[0])


def check_disk_consistent(disk: Path) -> list[str]:
    """Problems with the files under `disk` versus the slots' `file_entries`.

    Checks: no temp files anywhere; every slot's group database exists and no
    per-slot database of the old layout is left; no `pending` rows (start-up removed the
    interrupted writes); every file under a slot's `blobs/` is a part some
    row references (a current head's, or a superseded head still kept for GC);
    every part row's file exists with the recorded size, and its content
    hashes to the sha256 in its row and in its name. An empty list: all good.
    """
    problems = [f"temp file left: {t}" for t in temp_files(disk)]
    for sd in slot_dirs(disk):
        if (sd / "meta.sqlite3").exists():
            problems.append(f"{sd.name}: per-slot database left after start-up")
        if not meta_db(sd).is_file():
            problems.append(f"{sd.name}: slot without its group database {meta_db(sd).name}")
            continue
        pending = count_entries(sd, "pending")
        if pending:
            problems.append(f"{sd.name}: {pending} pending rows after start-up")
        rows = part_rows(sd)
        referenced = {r.local_path for r in rows}
        blobs = sd / "blobs"
        on_disk: set[str] = set()
        if blobs.is_dir():
            for dirpath, _dirs, files in os.walk(blobs):
                for f in files:
                    on_disk.add(Path(dirpath, f).relative_to(sd).as_posix())
        for rel in sorted(on_disk - referenced):
            problems.append(f"{sd.name}: unreferenced file {rel}")
        for row in rows:
            if row.local_path is None:  # inline: the bytes are in the row
                inline = row.data or b""
                if len(inline) != row.size_bytes or sha256_hex(inline) != row.sha256:
                    problems.append(f"{sd.name}: inline part {row.path}@{row.generation} "
                                    "does not match its size or hash")
                continue
            file = sd / row.local_path
            if not file.is_file():
                state = "superseded" if row.superseded else "current"
                problems.append(f"{sd.name}: {state} part {row.local_path} is missing")
                continue
            data = file.read_bytes()
            if len(data) != row.size_bytes:
                problems.append(f"{sd.name}: {row.local_path} has {len(data)} bytes, "
                                f"row says {row.size_bytes}")
            digest = sha256_hex(data)
            if digest != row.sha256 or not file.name.endswith(f".{digest}"):
                problems.append(f"{sd.name}: {row.local_path} content hash {digest} does not "
                                f"match its row ({row.sha256}) or name")
            if not file.name.startswith(f"part.{row.part_index:08d}."):
                problems.append(f"{sd.name}: {row.local_path} is part {row.part_index}")
    return problems
