"""Cluster keys rotate without a restart: the node rereads its key file on SIGHUP."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from process_harness import NodeDef, ProcessPool, single_node_config, write_config

from rimio.core.keyring import KeyRing
from rimio.net.http import signed_headers

pytestmark = pytest.mark.process

OLD = "1a" * 32
NEW = "2b" * 32
BOOTSTRAP = "/internal/v1/cluster/bootstrap"


def _status_signed_with(node: NodeDef, key: str) -> int:
    headers = signed_headers(KeyRing.parse(key), "GET", BOOTSTRAP, b"",
                             destination=node.node_id)
    return httpx.get(node.url + BOOTSTRAP, headers=headers, timeout=5).status_code


def _wait(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_sighup_adds_and_drops_keys(tmp_path: Path, one_node: NodeDef,
                                    rimio_pool: ProcessPool) -> None:
    key_file = tmp_path / "cluster.key"
    key_file.write_text(OLD + "\n")
    config = single_node_config(one_node)
    config["cluster"]["key_file"] = str(key_file)
    proc = rimio_pool.start_node(write_config(tmp_path / "rimio.yaml", config), one_node)
    assert _status_signed_with(one_node, OLD) == 200
    assert _status_signed_with(one_node, NEW) == 401

    key_file.write_text(f"{OLD}\n{NEW}\n")  # add the new key
    proc.send_signal(signal.SIGHUP)
    _wait(lambda: _status_signed_with(one_node, NEW) == 200, "the new key is accepted")
    assert _status_signed_with(one_node, OLD) == 200  # every key in the file is

    key_file.write_text(f"# rotated\n{NEW}\n")  # drop the old one
    proc.send_signal(signal.SIGHUP)
    _wait(lambda: _status_signed_with(one_node, OLD) == 401, "the old key is refused")
    assert _status_signed_with(one_node, NEW) == 200

    key_file.write_text("not a key\n")  # a broken file keeps the keys in use
    proc.send_signal(signal.SIGHUP)
    _wait(lambda: "keeping the keys in use" in proc.stderr(), "the bad file is reported")
    assert _status_signed_with(one_node, NEW) == 200

    assert proc.running()
    assert proc.stop(signal.SIGTERM) == 0
    assert OLD not in proc.stderr() and NEW not in proc.stderr()
