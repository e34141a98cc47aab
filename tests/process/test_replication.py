"""The replicated data path with real `rimio` processes (issue 7, item 8).

Three keyed nodes with R = 3 and W = 2: a write through one node is read
through each; with one node SIGKILLed writes are still acknowledged; with two
down they are refused and leave nothing visible when the nodes return;
concurrent writers to one path through the three nodes leave every replica on
the same bytes; a fourth node joins and one is decommissioned with data in
place.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from process_harness import (
    FAST_MEMBERSHIP,
    NodeDef,
    ProcessPool,
    RimioProcess,
    all_see,
    cluster_config,
    free_port,
    make_nodes,
    run_rimio,
    wait_until,
    write_config,
    write_key,
)

pytestmark = pytest.mark.process

def _cluster(tmp_path: Path, pool: ProcessPool, count: int = 3
             ) -> tuple[list[NodeDef], list[RimioProcess], Path, Path]:
    nodes = make_nodes(tmp_path, count)
    key = write_key(tmp_path / "cluster.key")
    cfg: dict[str, Any] = cluster_config(nodes, replicas=3, min_write_replicas=2)
    cfg["cluster"]["key_file"] = str(key)
    cfg["membership"] = dict(FAST_MEMBERSHIP)
    conf = write_config(tmp_path / "cluster.yaml", cfg)
    procs = pool.start_cluster(conf, nodes)
    ids = [n.node_id for n in nodes]
    wait_until(lambda: all_see(nodes, ids, "alive"), 20, "every node sees every other alive")
    return nodes, procs, key, conf


@functools.cache
def _http() -> httpx.Client:
    """One client for the whole module: `httpx.get` builds a client (and its
    TLS context, ~30 ms of CPU) per call, and the polling of a join took a
    good share of the two cores the nodes run on."""
    return httpx.Client(timeout=30)


def _put(node: NodeDef, path: str, data: bytes, **headers: str) -> httpx.Response:
    return _http().put(f"{node.url}/api/v1/blobs/{path}", content=data, headers=headers)


def _get(node: NodeDef, path: str) -> httpx.Response:
    return _http().get(f"{node.url}/api/v1/blobs/{path}")


def test_write_one_read_each_and_survive_a_kill(tmp_path: Path,
                                                rimio_pool: ProcessPool) -> None:
    nodes, procs, _key, _conf = _cluster(tmp_path, rimio_pool)
    small, large = b"hello replicas", bytes(range(256)) * 40_000  # 10 MB: several parts
    for i, data in enumerate((small, large)):
        r = _put(nodes[0], f"obj/{i}", data)
        assert r.status_code == 201, r.text
        assert r.json()["committed_replicas"] >= 2
        for node in nodes:
            got = _get(node, f"obj/{i}")
            assert got.status_code == 200 and got.content == data
            assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'

    procs[2].kill()  # SIGKILL: no goodbye
    for i in range(10):
        r = _put(nodes[i % 2], f"after-kill/{i}", b"x" * i)
        assert r.status_code == 201, r.text
        assert r.json()["committed_replicas"] == 2
    for i in range(10):
        assert _get(nodes[(i + 1) % 2], f"after-kill/{i}").content == b"x" * i
    # the killed node comes back and serves what was written while it was away
    procs[2].start()
    procs[2].wait_ready()
    for i in range(10):
        assert _get(nodes[2], f"after-kill/{i}").content == b"x" * i


def test_two_down_refuses_and_leaves_nothing(tmp_path: Path,
                                             rimio_pool: ProcessPool) -> None:
    nodes, procs, _key, _conf = _cluster(tmp_path, rimio_pool)
    assert _put(nodes[0], "before", b"old").status_code == 201
    procs[1].kill()
    procs[2].kill()
    wait_until(lambda: all_see(nodes[:1], [nodes[1].node_id, nodes[2].node_id], "dead"), 30,
          "node-1 sees the other two dead")
    r = _put(nodes[0], "during", b"new")
    assert r.status_code == 503 and r.json()["error"]["code"] == "quorum_lost"
    r = _put(nodes[0], "before", b"overwrite")
    assert r.status_code == 503
    # an edge store stays readable: the one replica left serves what it has
    got = _get(nodes[0], "before")
    assert got.status_code == 200 and got.content == b"old"
    assert got.headers.get("x-rimio-read-quorum") == "degraded"
    for proc in procs[1:]:
        proc.start()
        proc.wait_ready()
    ids = [n.node_id for n in nodes]
    wait_until(lambda: all_see(nodes, ids, "alive"), 20, "everyone alive again")
    for node in nodes:
        assert _get(node, "during").status_code == 404
        assert _get(node, "before").content == b"old"


def test_concurrent_writers_converge(tmp_path: Path, rimio_pool: ProcessPool) -> None:
    nodes, procs, _key, _conf = _cluster(tmp_path, rimio_pool)
    bodies = {(w, i): f"writer {w} round {i}".encode() * 100 for w in range(3) for i in range(8)}

    def writer(w: int) -> list[int]:
        return [_put(nodes[w], "contended", bodies[(w, i)]).status_code for i in range(8)]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        statuses = [s for result in pool.map(writer, range(3)) for s in result]
    assert all(s == 201 for s in statuses), statuses
    answers = {_get(node, "contended").content for node in nodes}
    assert len(answers) == 1 and answers <= set(bodies.values())
    # each replica alone (the other two stopped) holds the same bytes
    winner = answers.pop()
    for alone in range(3):
        others = [p for j, p in enumerate(procs) if j != alone]
        for proc in others:
            proc.stop(signal.SIGTERM)
        got = _get(nodes[alone], "contended")
        assert got.status_code == 200 and got.content == winner
        for proc in others:
            proc.start()
        for proc in others:
            proc.wait_ready()
        wait_until(lambda: all_see(nodes, [n.node_id for n in nodes], "alive"), 20, "all alive")


def _cluster_state(node: NodeDef) -> dict[str, Any]:
    return dict(_http().get(node.url + "/api/v1/cluster", timeout=5).json())


def test_join_and_decommission_with_data(tmp_path: Path, rimio_pool: ProcessPool) -> None:
    nodes, procs, key, _conf = _cluster(tmp_path, rimio_pool)
    data = {f"moving/{i}": f"object {i}".encode() * 50 for i in range(200)}
    for i, (path, body) in enumerate(data.items()):
        assert _put(nodes[i % 3], path, body).status_code == 201
    before = _cluster_state(nodes[0])
    assert before["moving_slots"] == 0

    new = NodeDef("node-4", free_port(), tmp_path / "node-4" / "disk")
    joiner = rimio_pool.spawn(["join", f"cluster://{nodes[0].addr}", "--node", "node-4",
                               "--listen", new.addr, "--disk", str(new.disk),
                               "--key-file", str(key)], "node-4", url=new.url,
                              node_id="node-4")
    joiner.wait_ready()
    wait_until(lambda: _cluster_state(nodes[0])["layout_version"] > before["layout_version"], 20,
          "the join changes the layout")
    wait_until(lambda: all(_cluster_state(n)["moving_slots"] == 0 for n in [*nodes, new]), 120,
          "every slot sits where the layout wants it after the join")
    roles = {n["node_id"]: n for n in _http().get(new.url + "/api/v1/nodes").json()["nodes"]}
    assert roles["node-4"]["role"] == "active" and roles["node-4"]["slots"] > 0
    for path, body in data.items():
        assert _get(new, path).content == body

    out = run_rimio(["admin", "decommission", "node-1", "--via", nodes[1].url,
                     "--key-file", str(key)], timeout=180)
    assert out.returncode == 0, out.stderr
    roles = {n["node_id"]: n for n in _http().get(nodes[1].url + "/api/v1/nodes").json()["nodes"]}
    assert roles["node-1"]["slots"] == 0
    assert procs[0].stop(signal.SIGTERM) == 0
    for path, body in data.items():
        for node in (nodes[1], nodes[2], new):
            assert _get(node, path).content == body
