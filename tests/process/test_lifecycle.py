"""Process life cycle: graceful stop, write-id replay across restarts, `rimio demo`."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from process_harness import (
    HOST,
    NodeDef,
    ProcessPool,
    check_disk_consistent,
    free_port,
    single_node_config,
    temp_files,
    write_config,
)

PART = 64 * 1024
CHUNK = 64 * 1024


class SlowUpload:
    """A PUT whose body trickles in from a generator, run in a thread."""

    def __init__(self, url: str, chunks: int, delay: float) -> None:
        self.body = os.urandom(chunks * CHUNK)
        self.sha = hashlib.sha256(self.body).hexdigest()
        self.url = url
        self.chunks = chunks
        self.delay = delay
        self.sent = 0
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _body(self) -> Iterator[bytes]:
        for i in range(self.chunks):
            yield self.body[i * CHUNK:(i + 1) * CHUNK]
            self.sent = i + 1
            time.sleep(self.delay)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(30.0, connect=3.0)) as client:
                self.response = client.put(self.url, content=self._body())
        except BaseException as exc:
            self.error = exc
        self.finished_at = time.monotonic()

    def start(self) -> SlowUpload:
        self._thread.start()
        return self

    def wait_sent(self, chunks: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < chunks:
            assert self._thread.is_alive(), f"upload ended early: {self.error or self.response}"
            assert time.monotonic() < deadline, f"only {self.sent} chunks sent in {timeout}s"
            time.sleep(0.01)

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the upload did not finish"


@pytest.mark.process
@pytest.mark.timeout(60)
def test_sigterm_lets_an_inflight_put_finish_then_exits_0(
    rimio_pool: ProcessPool, one_node: NodeDef
) -> None:
    _conf, proc = rimio_pool.start_single(
        one_node, storage={"part_size_bytes": PART}, server={"graceful_timeout_seconds": 10})
    upload = SlowUpload(f"{one_node.url}/api/v1/blobs/slow/big.bin", chunks=40,
                        delay=0.05).start()  # 2.5 MiB over >= 2 s
    upload.wait_sent(8)
    proc.send_signal(signal.SIGTERM)
    term_at = time.monotonic()
    upload.join()
    assert upload.error is None, f"{upload.error!r}\n{proc.describe()}"
    assert upload.response is not None
    assert upload.response.status_code == 201, upload.response.text
    assert upload.finished_at is not None and upload.finished_at - term_at > 0.5, (
        "the upload should still have been streaming when SIGTERM arrived")
    info = upload.response.json()
    assert info["etag"] == upload.sha
    assert info["size_bytes"] == len(upload.body)
    assert proc.wait(15) == 0, proc.describe()

    proc.start().wait_ready()
    r = httpx.get(f"{one_node.url}/api/v1/blobs/slow/big.bin", timeout=15)
    assert r.status_code == 200
    assert r.content == upload.body
    assert r.headers["ETag"] == f'"{upload.sha}"'
    assert r.headers["X-Rimio-Generation"] == str(info["generation"])
    assert check_disk_consistent(one_node.disk) == []


@pytest.mark.process
@pytest.mark.timeout(60)
def test_sigterm_stop_is_bounded_by_the_graceful_timeout(
    rimio_pool: ProcessPool, one_node: NodeDef
) -> None:
    """An upload slower than the graceful timeout is cut off; the stop still exits 0 and
    the unfinished upload leaves nothing visible and nothing on disk."""
    _conf, proc = rimio_pool.start_single(
        one_node, storage={"part_size_bytes": PART}, server={"graceful_timeout_seconds": 1})
    upload = SlowUpload(f"{one_node.url}/api/v1/blobs/too-slow", chunks=200,
                        delay=0.05).start()  # >= 10 s
    upload.wait_sent(20)  # > 1 MiB: parts of it are on disk
    proc.send_signal(signal.SIGTERM)
    term_at = time.monotonic()
    rc = proc.wait(15)
    stopped_in = time.monotonic() - term_at
    assert rc == 0, proc.describe()
    assert stopped_in < 8, f"stop took {stopped_in:.1f}s with a 1 s graceful timeout"
    upload.join()
    assert upload.response is None or upload.response.status_code != 201, (
        "an upload that could not have finished was acknowledged")

    proc.start().wait_ready()
    r = httpx.get(f"{one_node.url}/api/v1/blobs/too-slow", timeout=15)
    assert r.status_code == 404, r.text
    assert check_disk_consistent(one_node.disk) == []


@pytest.mark.process
@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL],
                         ids=["sigterm", "sigkill"])
def test_write_id_replay_survives_a_restart(
    rimio_pool: ProcessPool, one_node: NodeDef, stop_signal: int
) -> None:
    _conf, proc = rimio_pool.start_single(one_node, storage={"part_size_bytes": 4096})
    url = f"{one_node.url}/api/v1/blobs/replay/obj"
    body = os.urandom(10_000)  # three parts
    headers = {"X-Rimio-Write-Id": "client-7:write-0001"}
    with httpx.Client(timeout=15) as client:
        first = client.put(url, content=body, headers=headers)
        assert first.status_code == 201, first.text
        original = first.json()
        assert original["etag"] == hashlib.sha256(body).hexdigest()
        assert "idempotent_replay" not in original or original["idempotent_replay"] is False
        again = client.put(url, content=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["idempotent_replay"] is True

    proc.restart(stop_signal)

    with httpx.Client(timeout=15) as client:
        replay = client.put(url, content=body, headers=headers)
        assert replay.status_code == 200, replay.text
        info = replay.json()
        assert info["idempotent_replay"] is True
        assert info["generation"] == original["generation"]
        assert info["etag"] == original["etag"]
        assert info["size_bytes"] == original["size_bytes"]
        assert replay.headers.get("ETag") == f'"{original["etag"]}"'
        # The replay wrote nothing: the object is still the first write.
        got = client.get(url)
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["X-Rimio-Generation"] == str(original["generation"])
        # A new write id writes a new generation.
        fresh = client.put(url, content=b"next", headers={"X-Rimio-Write-Id": "client-7:0002"})
        assert fresh.status_code == 201, fresh.text
        assert fresh.json()["generation"] == original["generation"] + 1
    assert temp_files(one_node.disk) == []


def _consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        start = free_port()
        if start + count > 65535:
            continue
        socks = []
        try:
            for i in range(count):
                s = socket.socket()
                socks.append(s)
                s.bind((HOST, start + i))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no run of free ports found")


@pytest.mark.process
@pytest.mark.timeout(60)
@pytest.mark.parametrize("explicit_data", [True, False], ids=["data-dir", "default-data"])
def test_demo_serves_prints_url_and_curl_and_exits_0_on_sigint(
    rimio_pool: ProcessPool, tmp_path: Path, explicit_data: bool
) -> None:
    port = _consecutive_free_ports(3)  # the demo is a 3-node cluster on port, port+1, port+2
    url = f"http://{HOST}:{port}"
    data = tmp_path / "my-data" if explicit_data else tmp_path / "rimio-data"
    args = ["demo", "--port", str(port)]
    if explicit_data:
        args += ["--data", str(data)]
    proc = rimio_pool.spawn(args, "demo", url=url, cwd=tmp_path).wait_ready()

    # the demo first shows a node going away and coming back (tests/process/test_demo.py)
    deadline = time.monotonic() + 60
    while "demo: data survived" not in proc.stdout() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = proc.stdout()
    assert url in out, out
    curls = [line for line in out.splitlines() if "curl" in line]
    assert curls and any(url in line for line in curls), out

    with httpx.Client(timeout=15) as client:
        put = client.put(f"{url}/api/v1/blobs/hello.txt", content=b"hello edge")
        assert put.status_code == 201, put.text
        got = client.get(f"{url}/api/v1/blobs/hello.txt")
        assert got.status_code == 200 and got.content == b"hello edge"
    assert (data / "node-1" / "slots").is_dir(), sorted(p.name for p in tmp_path.iterdir())
    with httpx.Client(timeout=15) as client:
        for i in (1, 2):  # every node serves every path
            got = client.get(f"http://{HOST}:{port + i}/api/v1/blobs/hello.txt")
            assert got.status_code == 200 and got.content == b"hello edge"

    assert proc.stop(signal.SIGINT) == 0, proc.describe()
    assert "Traceback" not in proc.stderr(), proc.stderr()


@pytest.mark.process
@pytest.mark.timeout(60)
def test_sigterm_with_an_idle_keep_alive_client_exits_promptly(
    rimio_pool: ProcessPool, one_node: NodeDef
) -> None:
    """Nothing is in flight, so the stop must not wait out the graceful timeout just
    because a client (a connection pool, a peer node) holds an idle keep-alive
    connection. KNOWN FAILURE at the time of writing: the node waits the full
    graceful timeout (idle connections are never closed by the server)."""
    graceful = 6.0
    _conf, proc = rimio_pool.start_single(
        one_node, server={"graceful_timeout_seconds": graceful})
    with httpx.Client(timeout=15) as client:
        assert client.put(f"{one_node.url}/api/v1/blobs/k", content=b"v").status_code == 201
        assert client.get(f"{one_node.url}/api/v1/blobs/k").content == b"v"
        # the connection now sits idle in the client's pool
        term_at = time.monotonic()
        rc = proc.stop(signal.SIGTERM)
        took = time.monotonic() - term_at
    assert rc == 0, proc.describe()
    assert took < graceful / 2, (
        f"an idle keep-alive connection held the stop for {took:.1f}s "
        f"(graceful timeout {graceful}s)")


@pytest.mark.process
@pytest.mark.timeout(60)
def test_relative_disk_path_is_relative_to_the_config_file(
    rimio_pool: ProcessPool, tmp_path: Path
) -> None:
    """Started from another working directory, a relative disk lands beside the config;
    SIGINT stops `rimio start` with exit 0 too."""
    port = free_port()
    conf_dir = tmp_path / "etc"
    node = NodeDef("node-1", port, Path("data/node-1"))
    conf = write_config(conf_dir / "rimio.yaml", single_node_config(node))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = rimio_pool.spawn(["start", "--conf", str(conf), "--node", "node-1"], "rel",
                            url=node.url, node_id="node-1", cwd=elsewhere).wait_ready()
    r = httpx.put(f"{node.url}/api/v1/blobs/x", content=b"x", timeout=15)
    assert r.status_code == 201, r.text
    assert (conf_dir / "data" / "node-1" / "slots").is_dir()
    assert list(elsewhere.iterdir()) == []
    assert proc.stop(signal.SIGINT) == 0, proc.describe()
