"""A real `rimio start` refuses a missing, unmounted or foreign disk (RFC 0012):
one `rimio: error:` line, exit 2, nothing written; `rimio admin init-disk`
brings a replaced disk back, and an older Rimio's disks are adopted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from process_harness import (
    NodeDef,
    ProcessPool,
    free_port,
    run_rimio,
    single_node_config,
    tree,
    write_config,
)

IDENTITY_FILE = "rimio-disk.json"


def _two_disk_config(node: NodeDef, second: Path) -> dict[str, Any]:
    config = single_node_config(node)
    config["initial_cluster"]["nodes"][0]["disks"] = [{"path": str(node.disk)},
                                                      {"path": str(second)}]
    return config


def _refused(args: list[str], root: Path, *expected: str) -> str:
    """Run `rimio args`; it must refuse with one line naming `expected`, writing nothing."""
    before = tree(root)
    done = run_rimio(args, cwd=root)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, f"exit {done.returncode}; stderr:\n{done.stderr}"
    assert len(lines) == 1, f"expected one stderr line, got:\n{done.stderr}"
    assert lines[0].startswith("rimio: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert tree(root) == before, "a refused start wrote files"
    return lines[0]


@pytest.mark.process
@pytest.mark.timeout(90)
def test_a_missing_unmounted_or_foreign_disk_is_refused(
        tmp_path: Path, one_node: NodeDef, rimio_pool: ProcessPool) -> None:
    data = tmp_path / "data"
    second = tmp_path / "mnt" / "disk2"
    conf = write_config(tmp_path / "rimio.yaml", _two_disk_config(one_node, second))
    node = rimio_pool.start_node(conf, one_node)
    for i in range(8):  # some objects on each disk
        assert httpx.put(f"{one_node.url}/api/v1/blobs/o{i}", content=b"x" * 10).status_code == 201
    assert node.stop() == 0
    assert (second / IDENTITY_FILE).is_file() and (one_node.disk / IDENTITY_FILE).is_file()
    start = ["start", "--conf", str(conf), "--node", one_node.node_id]

    # The mount is gone, and so is the directory.
    second.rename(data)
    _refused(start, tmp_path, f"disk {second} of node node-1 is missing", "init-disk")
    # The mount point is there, empty: the disk is not mounted.
    second.mkdir()
    _refused(start, tmp_path, f"disk {second} of node node-1 looks unmounted", "init-disk")
    second.rmdir()
    data.rename(second)

    # Another node's disk swapped in for the second disk.
    other = NodeDef("node-2", free_port(), tmp_path / "node-2" / "disk")
    other_conf = write_config(tmp_path / "other.yaml", single_node_config(other))
    assert rimio_pool.start_node(other_conf, other).stop() == 0
    swapped = _two_disk_config(one_node, other.disk)
    _refused(["start", "--conf", str(write_config(tmp_path / "swapped.yaml", swapped)),
              "--node", "node-1"], tmp_path, f"disk {other.disk} belongs to node 'node-2'")

    # A disk of another cluster (same node id).
    renamed = _two_disk_config(one_node, second)
    renamed["cluster"]["name"] = "elsewhere"
    _refused(["start", "--conf", str(write_config(tmp_path / "renamed.yaml", renamed)),
              "--node", "node-1"], tmp_path, "belongs to cluster 'proc-test'")

    # A damaged identity file is named, never a traceback.
    identity = second / IDENTITY_FILE
    good = identity.read_bytes()
    identity.write_bytes(b'{"format": 1, "cluster": ')
    _refused(start, tmp_path, f"{identity} is unusable: it is not JSON")
    identity.write_bytes(good)

    # Everything back in place: the node starts and serves what it had.
    rimio_pool.start_node(conf, one_node)
    for i in range(8):
        assert httpx.get(f"{one_node.url}/api/v1/blobs/o{i}").content == b"x" * 10


@pytest.mark.process
@pytest.mark.timeout(90)
def test_init_disk_brings_a_replaced_disk_in_and_old_disks_are_adopted(
        tmp_path: Path, one_node: NodeDef, rimio_pool: ProcessPool) -> None:
    second = tmp_path / "disk2"
    conf = write_config(tmp_path / "rimio.yaml", _two_disk_config(one_node, second))
    node = rimio_pool.start_node(conf, one_node)
    assert node.stop() == 0
    start = ["start", "--conf", str(conf), "--node", one_node.node_id]
    init = ["admin", "init-disk", "--conf", str(conf), "--node", one_node.node_id]

    # The second disk is replaced by a blank one: refused until the operator says so.
    shutil.rmtree(second)
    second.mkdir()
    _refused(start, tmp_path, "looks unmounted")
    _refused([*init, str(one_node.disk)], tmp_path, "is not blank")
    _refused([*init, str(tmp_path / "elsewhere")], tmp_path, "is not a disk of node node-1")
    done = run_rimio([*init, str(second)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"initialised disk {second} of node node-1" in done.stderr
    written = json.loads((second / IDENTITY_FILE).read_text())
    assert (written["node_id"], written["cluster"], written["disk_index"]) == (
        "node-1", "proc-test", 1)
    node.start().wait_ready()
    assert httpx.put(f"{one_node.url}/api/v1/blobs/after", content=b"y").status_code == 201
    assert node.stop() == 0

    # Disks written before identities existed: adopted once, with a warning.
    before = {d: json.loads((d / IDENTITY_FILE).read_text()) for d in (one_node.disk, second)}
    for d in before:
        (d / IDENTITY_FILE).unlink()
    node.start().wait_ready()
    assert "was written by an older Rimio" in node.stderr()
    assert httpx.get(f"{one_node.url}/api/v1/blobs/after").content == b"y"
    for d, old in before.items():
        adopted = json.loads((d / IDENTITY_FILE).read_text())
        assert adopted["node_id"] == "node-1" and adopted["disk_uuid"] != old["disk_uuid"]
    assert node.stop() == 0
    node.start().wait_ready()
    assert "was written by an older Rimio" not in node.stderr()
