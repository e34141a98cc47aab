"""Membership with real `rimio` processes: five founding nodes, SIGSTOP/SIGCONT,
`rimio join`, and the cluster key (issue 3, item 8)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from process_harness import (
    FAST_MEMBERSHIP,
    NodeDef,
    ProcessPool,
    all_see,
    cluster_config,
    free_port,
    make_nodes,
    member_view,
    run_rimio,
    wait_until,
    write_config,
    write_key,
)

pytestmark = pytest.mark.process

FAST = {**FAST_MEMBERSHIP, "reconnect_interval": 2.0}


def _config(nodes: list[NodeDef], **extra: Any) -> dict[str, Any]:
    cfg = cluster_config(nodes, replicas=3)
    cfg["membership"] = dict(FAST)
    cfg.update(extra)
    return cfg


def test_five_nodes_stop_continue_and_join(tmp_path: Path, rimio_pool: ProcessPool) -> None:
    nodes = make_nodes(tmp_path, 5)
    key = write_key(tmp_path / "cluster.key")
    cfg = _config(nodes)
    cfg["cluster"]["key_file"] = str(key)
    conf = write_config(tmp_path / "cluster.yaml", cfg)
    procs = rimio_pool.start_cluster(conf, nodes)
    ids = [n.node_id for n in nodes]
    wait_until(lambda: all_see(nodes, ids, "alive"), 20, "5 nodes agree on 5 alive members")

    victim, others = nodes[4], nodes[:4]
    before = member_view(nodes[0])[victim.node_id]["incarnation"]
    procs[4].send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: all_see(others, [victim.node_id], "dead"), 40,
              "every other member marks the stopped node dead")
    finally:
        procs[4].send_signal(signal.SIGCONT)
    wait_until(lambda: all_see(nodes, ids, "alive"), 30, "the continued node is alive everywhere")
    for obs in others:
        assert member_view(obs)[victim.node_id]["incarnation"] > before

    new = NodeDef("node-6", free_port(), tmp_path / "node-6" / "disk")
    seeds = f"cluster://{nodes[1].addr},{nodes[2].addr}"
    joiner = rimio_pool.spawn(["join", seeds, "--node", "node-6", "--listen", new.addr,
                               "--disk", str(new.disk), "--key-file", str(key)], "node-6",
                              url=new.url,
                              node_id="node-6")
    joiner.wait_ready()
    everyone = [*nodes, new]
    wait_until(lambda: all_see(everyone, [n.node_id for n in everyone], "alive"), 20,
          "all six members see six alive")

    # a second node with a live member's id is refused, and nothing is written
    dup_disk = tmp_path / "dup" / "disk"
    out = run_rimio(["join", seeds, "--node", "node-3", "--listen",
                     f"127.0.0.1:{free_port()}", "--disk", str(dup_disk),
                     "--key-file", str(key)])
    assert out.returncode == 2
    assert out.stderr.startswith("rimio: error: node id 'node-3' is already alive")
    assert not dup_disk.exists()

    # a graceful stop is announced: the others see `left`, not `dead`
    assert joiner.stop(signal.SIGTERM) == 0
    wait_until(lambda: all_see(nodes, ["node-6"], "left"), 15, "node-6 is seen as left")


def test_keyed_cluster_needs_the_key(tmp_path: Path, rimio_pool: ProcessPool) -> None:
    key = tmp_path / "cluster.key"
    key.write_text("5a" * 32 + "\n")
    nodes = make_nodes(tmp_path, 3)
    cfg = _config(nodes)
    cfg["cluster"]["key_file"] = str(key)
    conf = write_config(tmp_path / "cluster.yaml", cfg)
    rimio_pool.start_cluster(conf, nodes)
    ids = [n.node_id for n in nodes]
    wait_until(lambda: all_see(nodes, ids, "alive"), 20, "keyed cluster converges")

    r = httpx.post(nodes[0].url + "/internal/v1/gossip/packet", content=b"\x80")
    assert r.status_code == 401
    new_disk = tmp_path / "n4" / "disk"
    out = run_rimio(["join", f"cluster://{nodes[0].addr}", "--node", "node-4", "--listen",
                     f"127.0.0.1:{free_port()}", "--disk", str(new_disk)])
    assert out.returncode == 2 and "key" in out.stderr and not new_disk.exists()

    port = free_port()
    joiner = rimio_pool.spawn(["join", f"cluster://{nodes[0].addr}", "--node", "node-4",
                               "--listen", f"127.0.0.1:{port}", "--disk", str(new_disk),
                               "--key-file", str(key)], "node-4",
                              url=f"http://127.0.0.1:{port}", node_id="node-4")
    joiner.wait_ready()
    wait_until(lambda: all_see(nodes, ["node-4"], "alive"), 20, "the keyed joiner is alive")
