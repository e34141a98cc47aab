"""The process-test checkers catch planted anomalies (a checker that never fails proves
nothing), and start-up removes a planted interrupted write."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from process_checks import Write, verify_history
from process_harness import (
    NodeDef,
    ProcessPool,
    check_disk_consistent,
    meta_db,
    part_rows,
    slot_dirs,
)

PART = 4096


def _slot_of(disk: Path, path: str) -> Path:
    for sd in slot_dirs(disk):
        if any(r.path == path for r in part_rows(sd)):
            return sd
    raise AssertionError(f"no slot holds parts of {path}")


def _put(client: httpx.Client, url: str, path: str, body: bytes) -> tuple[Write, int]:
    """PUT `body`; returns the acknowledged write and its generation."""
    r = client.put(f"{url}/api/v1/blobs/{path}", content=body)
    assert r.status_code == 201, r.text
    gen = int(r.json()["generation"])
    return Write(0, path, hashlib.sha256(body).hexdigest(), len(body), "acked", gen), gen


@pytest.mark.process
@pytest.mark.timeout(60)
def test_checkers_catch_planted_anomalies(rimio_pool: ProcessPool, one_node: NodeDef) -> None:
    _conf, proc = rimio_pool.start_single(one_node, storage={"part_size_bytes": PART})
    url = one_node.url
    with httpx.Client(timeout=15) as client:
        a1, a1_gen = _put(client, url, "a", os.urandom(3 * PART))  # superseded, kept for GC
        a2, a2_gen = _put(client, url, "a", os.urandom(2 * PART + 5))
        b1, _ = _put(client, url, "b", os.urandom(PART))
    history = [a1, a2, b1]
    assert verify_history(url, history) == []
    assert check_disk_consistent(one_node.disk) == []

    def caught(planted: list[Write], needle: str) -> None:
        problems = verify_history(url, planted)
        assert any(needle in p for p in problems), (needle, problems)

    caught([*history, Write(0, "a", "f" * 64, 1, "acked", 3)], "lost")
    caught([a1, Write(0, "a", "e" * 64, 1, "acked", a2.generation), b1], "acknowledged with")
    caught([a1, b1], "is no write's body")
    caught([*history, Write(0, "never", "d" * 64, 1, "acked", 1)], "404 but")
    caught([*history, Write(1, "b", b1.sha, b1.size, "acked", b1.generation)],
           "acknowledged twice")

    assert proc.stop() == 0, proc.describe()
    sd = _slot_of(one_node.disk, "a")
    rows = {(r.generation, r.part_index): r for r in part_rows(sd) if r.path == "a"}
    old, cur = rows[(a1_gen, 0)], rows[(a2_gen, 1)]
    gen_dir = (sd / cur.local_path).parent

    (gen_dir / ".tmp-planted").write_bytes(b"x")
    stray = gen_dir / f"part.00000099.{hashlib.sha256(b'stray').hexdigest()}"
    stray.write_bytes(b"stray")
    with open(sd / old.local_path, "r+b") as f:
        f.truncate(10)
    os.unlink(sd / cur.local_path)
    with sqlite3.connect(meta_db(sd)) as db:
        db.execute("INSERT INTO file_entries (slot_id, path, generation, entry_kind, local_path,"
                   " created_at) VALUES (?, 'a', 99, 'pending', 'blobs/a/g.99', ?)",
                   (int(sd.name), time.time()))
    db.close()
    problems = check_disk_consistent(one_node.disk)
    for needle in ("temp file left", "unreferenced file", "has 10 bytes", "content hash",
                   "current part", "pending rows"):
        assert any(needle in p for p in problems), (needle, problems)


@pytest.mark.process
@pytest.mark.timeout(60)
def test_start_up_removes_a_planted_interrupted_write(
    rimio_pool: ProcessPool, one_node: NodeDef
) -> None:
    """What a crash mid-PUT leaves (a pending row, a temp file, a sealed part of the
    next generation) is gone after a restart, and the committed object is intact."""
    _conf, proc = rimio_pool.start_single(one_node, storage={"part_size_bytes": PART})
    body = os.urandom(2 * PART)
    with httpx.Client(timeout=15) as client:
        w, gen = _put(client, one_node.url, "c", body)
    assert proc.stop() == 0, proc.describe()

    sd = _slot_of(one_node.disk, "c")
    gen_rel = f"blobs/c/g.{gen + 1}"
    gen_dir = sd / gen_rel
    gen_dir.mkdir(parents=True)
    (gen_dir / ".tmp-0123456789abcdef").write_bytes(b"half a part")
    (gen_dir / f"part.00000000.{hashlib.sha256(b'p0').hexdigest()}").write_bytes(b"p0")
    with sqlite3.connect(meta_db(sd)) as db:
        db.execute("INSERT INTO file_entries (slot_id, path, generation, entry_kind, local_path,"
                   " created_at) VALUES (?, 'c', ?, 'pending', ?, ?)",
                   (int(sd.name), gen + 1, gen_rel, time.time()))
    db.close()
    assert check_disk_consistent(one_node.disk) != []

    proc.start().wait_ready()
    assert check_disk_consistent(one_node.disk) == []
    assert not gen_dir.exists()
    assert verify_history(one_node.url, [w]) == []
