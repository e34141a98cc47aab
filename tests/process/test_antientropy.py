"""Anti-entropy with real `rimio` processes (issue 8, item 9; RFC 0014).

Three keyed nodes with R = 3 and W = 2 and the default repair settings. One
is SIGKILLed; 500 writes and deletes go to the other two; it restarts, and
with no client reading anything it catches up by itself: within 60 s its
anti-entropy reports a complete round, and then, alone (the others
stopped), it serves every one of those writes and none of the deleted paths.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs  # schemathesis's validator
import pytest
import trio
from process_harness import (
    FAST_MEMBERSHIP,
    NodeDef,
    ProcessPool,
    all_see,
    cluster_config,
    make_nodes,
    wait_until,
    write_config,
    write_key,
)

from rimio.api.openapi import status_schema
from rimio.cluster.peers import PeerClient
from rimio.config import load_keyring

pytestmark = pytest.mark.process

def _stats(key: Path, node: NodeDef) -> dict[str, Any]:
    async def ask() -> dict[str, Any]:
        client = PeerClient(load_keyring(key))
        try:
            resp = await client.send_signed(node.addr, "GET", "/internal/v1/stats",
                                            node_id=node.node_id)
            body: dict[str, Any] = json.loads(await resp.aread())
            await resp.aclose()
            return body
        finally:
            await client.aclose()

    try:
        return trio.run(ask)
    except (httpx.HTTPError, ValueError):
        return {}


def _body(i: int) -> bytes:
    # small (inline), one part, several parts
    size = (40, 20_000, 200_000)[i % 3]
    return hashlib.sha256(str(i).encode()).digest() * (size // 32) + b"z" * (size % 32)


def test_a_restarted_node_catches_up_alone(tmp_path: Path, rimio_pool: ProcessPool) -> None:
    nodes = make_nodes(tmp_path, 3)
    key = write_key(tmp_path / "cluster.key")
    cfg: dict[str, Any] = cluster_config(nodes, replicas=3, min_write_replicas=2)
    cfg["cluster"]["key_file"] = str(key)
    cfg["membership"] = dict(FAST_MEMBERSHIP)
    cfg["storage"] = {"part_size_bytes": 65536}
    conf = write_config(tmp_path / "cluster.yaml", cfg)
    procs = rimio_pool.start_cluster(conf, nodes)
    ids = [n.node_id for n in nodes]
    wait_until(lambda: all_see(nodes, ids, "alive"), 20, "every node sees every other alive")
    http = httpx.Client(timeout=30)

    def url(node: NodeDef, path: str) -> str:
        return f"{node.url}/api/v1/blobs/{path}"

    for i in range(30):  # data every node has
        assert http.put(url(nodes[i % 3], f"old/{i}"), content=_body(i)).status_code == 201
    procs[2].kill()
    wait_until(lambda: all_see(nodes[:2], [nodes[2].node_id], "dead"), 30,
               "the others see node-3 dead")
    written: dict[str, bytes] = {}
    deleted: set[str] = set()
    for i in range(500):
        node = nodes[i % 2]
        if i % 5 == 4:  # 100 deletes: of old paths and of paths written meanwhile
            path = f"old/{i % 30}" if i % 10 == 4 else f"new/{i - 4}"
            r = http.delete(url(node, path))
            assert r.status_code in (200, 204, 404, 410), r.text
            written.pop(path, None)
            deleted.add(path)
        else:
            path = f"new/{i}"
            r = http.put(url(node, path), content=_body(i))
            assert r.status_code == 201, r.text
            written[path] = _body(i)
            deleted.discard(path)
    assert len(written) >= 300 and len(deleted) >= 50

    restarted = time.monotonic()
    procs[2].start()
    procs[2].wait_ready()

    def caught_up() -> bool:
        ae = _stats(key, nodes[2]).get("anti_entropy", {})
        return ae.get("last_full_round") is not None and ae.get("heads_pulled", 0) > 0

    wait_until(caught_up, 60, "node-3's anti-entropy completes a round")
    assert time.monotonic() - restarted < 60
    # the public status says the same, to anyone holding a token (none here)
    status = http.get(f"{nodes[2].url}/api/v1/status").json()
    jsonschema_rs.validate(status_schema(), status)
    ae = status["anti_entropy"]
    assert ae["last_full_round"] is not None and ae["last_full_round"] <= status["time"]
    assert ae["heads_pulled"] > 0 and ae["parts_pulled"] > 0 and ae["bytes_pulled"] > 0

    for proc in procs[:2]:
        proc.stop()
    alone = nodes[2]
    for path, data in written.items():
        r = http.get(url(alone, path))
        assert r.status_code == 200 and r.content == data, (path, r.status_code)
    for path in deleted:
        r = http.get(url(alone, path))
        assert r.status_code in (404, 410), (path, r.status_code)
    for i in range(30):
        path = f"old/{i}"
        if path not in deleted:
            r = http.get(url(alone, path))
            assert r.status_code == 200 and r.content == _body(i), path
    http.close()
