"""`rimio demo` as a user runs it: three nodes with R = 3 and W = 2, whose
printed lines show data surviving a node going away (issue 7, item 9)."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path

import pytest
from process_harness import ProcessPool

pytestmark = pytest.mark.process


def _three_free_ports() -> int:
    """A port p with p, p+1 and p+2 free a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base > 65530:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + 3):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise AssertionError("no three consecutive free ports")


def test_demo_shows_data_surviving_a_node(tmp_path: Path, rimio_pool: ProcessPool) -> None:
    port = _three_free_ports()
    demo = rimio_pool.spawn(["demo", "--data", str(tmp_path / "data"), "--port", str(port)],
                            "demo")
    deadline = time.monotonic() + 60
    while "demo: data survived" not in demo.stdout() and time.monotonic() < deadline:
        assert demo.running(), demo.describe()
        time.sleep(0.2)
    lines = [ln for ln in demo.stdout().splitlines() if ln.startswith("demo: ")]
    assert lines == [
        "demo: wrote demo/hello.txt through node-1: 3 replicas hold it",
        "demo: stopped node-3",
        "demo: read demo/hello.txt through node-2 with node-3 gone: "
        "'hello from the rimio demo' (same bytes)",
        "demo: wrote demo/while-away.txt with node-3 gone: acknowledged by 2 replicas",
        "demo: node-3 is back; read demo/while-away.txt through it: "
        "'written while a node was away' (same bytes)",
        "demo: data survived a node going away",
    ], demo.describe()
    assert "Every object is kept on 3 nodes; a write is acknowledged once 2 hold it." \
        in demo.stdout()
    assert demo.stop(signal.SIGINT) == 0
