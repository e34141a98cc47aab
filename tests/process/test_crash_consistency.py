"""SIGKILL in the middle of a stream of PUTs, restart, and nothing acknowledged is lost.

Several client threads PUT random bodies (empty, small, exactly one part,
multi-part, some overwriting the same paths, some racing on the same path)
while the node is SIGKILLed at a random moment. After each restart:

- every acknowledged PUT (201 received) is intact: the path's visible
  generation is at least the acknowledged one, and if it is that generation
  the bytes are exactly that write's; a higher generation means a later write
  (acknowledged or in flight) legitimately overwrote it;
- no object is torn: each GET body hashes to its ETag and equals the body of
  some write issued to that path; HEAD and the listing agree with GET;
- no acknowledged (path, generation) pair was handed out twice;
- on disk: no `.tmp-` files, no `pending` rows, no part file that no
  `file_entries` row references (superseded generations kept for GC are
  referenced by their own rows), and every part row's file is whole.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from process_checks import Write, verify_history
from process_harness import (
    NodeDef,
    ProcessPool,
    RimioProcess,
    check_disk_consistent,
    count_entries,
    slot_dirs,
    temp_files,
)

PART = 64 * 1024
ROUNDS = 3
THREADS = 3
MAX_WRITES_PER_THREAD = 300  # per round; the kill normally comes long before
SLOW_CHUNK = 50_000
SLOW_CHUNKS = 80  # 4 MB at >= 20 ms a chunk: >= 1.6 s
SLOW_KILL_AFTER = 25  # chunks; > 1 MiB, so the node has already written parts of it
# Overlapping names on purpose: nested paths share directories ("dir/a" holds
# "dir/a/b"), and names the layout must escape ("g.1", ".hidden", "part.x").
PATHS = [
    "hot", "dir/a", "dir/a/b", "dir/c", "g.1", ".hidden/x", "part.00000000.x",
    "deep/1/2/3/obj", "big-1", "big-2", "empty-or-not", "ünïcode/naïve",
]
SIZES = [0, 1, 100, 4096, PART - 1, PART, PART + 1, 2 * PART, 3 * PART + 17, 5 * PART + 3,
         16 * PART]


class Workload:
    """PUTs from several threads; every write is recorded before it is sent."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.seed = seed
        self.writes: list[Write] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.acked = 0

    def run_round(self, rnd: int, proc: RimioProcess, rng: random.Random) -> Write:
        """One round of writes, ended by SIGKILL; returns the slow write the kill interrupted."""
        threads = [
            threading.Thread(target=self._client, args=(rnd, self.seed * 1000 + rnd * 10 + i),
                             daemon=True)
            for i in range(THREADS)
        ]
        # One slow upload that is surely mid-body (parts already on disk) when the kill comes.
        slow_body = random.Random(self.seed + rnd).randbytes(SLOW_CHUNKS * SLOW_CHUNK)
        slow = Write(rnd, rng.choice(PATHS), hashlib.sha256(slow_body).hexdigest(),
                     len(slow_body))
        sent = [0]
        with self.lock:
            self.writes.append(slow)
        threads.append(threading.Thread(target=self._slow_client, args=(slow, slow_body, sent),
                                        daemon=True))
        start_acked = self.acked
        for t in threads:
            t.start()
        try:
            # Let some writes through, then strike at a random moment.
            deadline = time.monotonic() + 15
            want = rng.randint(2, 12)
            while time.monotonic() < deadline and (
                    self.acked - start_acked < want or sent[0] < SLOW_KILL_AFTER):
                if not any(t.is_alive() for t in threads):
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.5))
        finally:
            proc.kill()
            for t in threads:
                t.join(20)
        assert not any(t.is_alive() for t in threads), "a client thread hung after the kill"
        return slow

    def _slow_client(self, w: Write, body: bytes, sent: list[int]) -> None:
        def chunks() -> Iterator[bytes]:
            for i in range(SLOW_CHUNKS):
                yield body[i * SLOW_CHUNK:(i + 1) * SLOW_CHUNK]
                sent[0] = i + 1
                time.sleep(0.02)

        with httpx.Client(timeout=httpx.Timeout(15.0, connect=3.0)) as client:
            try:
                r = client.put(f"{self.url}/api/v1/blobs/{w.path}", content=chunks())
            except httpx.TransportError:
                return
        self._record(w, r)

    def _client(self, rnd: int, seed: int) -> None:
        rng = random.Random(seed)
        timeout = httpx.Timeout(15.0, connect=3.0)
        with httpx.Client(timeout=timeout) as client:
            for _ in range(MAX_WRITES_PER_THREAD):
                path = rng.choice(PATHS)
                size = rng.choice(SIZES)
                body = rng.randbytes(size)
                w = Write(rnd, path, hashlib.sha256(body).hexdigest(), size)
                with self.lock:
                    self.writes.append(w)
                try:
                    r = client.put(f"{self.url}/api/v1/blobs/{path}", content=body)
                except httpx.TransportError:
                    return  # the node is gone; this write stays "in-flight"
                self._record(w, r)

    def _record(self, w: Write, r: httpx.Response) -> None:
        if r.status_code != 201:
            w.outcome = f"status {r.status_code}"
            with self.lock:
                self.problems.append(f"PUT {w.path} ({w.size} B) -> {r.status_code}: "
                                     f"{r.text[:300]}")
            return
        info = r.json()
        if info.get("etag") != w.sha or info.get("size_bytes") != w.size:
            with self.lock:
                self.problems.append(f"PUT {w.path}: 201 with wrong etag/size: {info}")
        w.generation = int(info["generation"])
        w.outcome = "acked"
        with self.lock:
            self.acked += 1


@pytest.mark.process
@pytest.mark.timeout(80)
def test_sigkill_mid_put_stream_loses_no_acknowledged_write(
    rimio_pool: ProcessPool, one_node: NodeDef
) -> None:
    seed = int(os.environ.get("RIMIO_TEST_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    tag = f"[seed {seed}; RIMIO_TEST_SEED={seed} reruns the same choices]"
    _conf, proc = rimio_pool.start_single(
        one_node, storage={"part_size_bytes": PART, "max_object_bytes": 128 * PART})
    load = Workload(one_node.url, seed)
    leftovers: list[str] = []
    for rnd in range(ROUNDS):
        slow = load.run_round(rnd, proc, rng)
        assert not load.problems, f"{tag} round {rnd}: {load.problems}\n{proc.describe()}"
        # The kill left an unfinished write behind, for start-up to clean up.
        pending = sum(count_entries(sd, "pending") for sd in slot_dirs(one_node.disk))
        temps = temp_files(one_node.disk)
        leftovers.append(f"round {rnd}: {pending} pending rows, {len(temps)} temp files")
        if slow.outcome == "in-flight":
            assert pending >= 1, f"{tag} round {rnd}: the interrupted upload left no pending row"
        proc.start().wait_ready()
        disk_problems = check_disk_consistent(one_node.disk)
        assert not disk_problems, f"{tag} after round {rnd}: {disk_problems}"
        api_problems = verify_history(one_node.url, load.writes)
        assert not api_problems, f"{tag} after round {rnd}: {api_problems}"

    acked = sum(w.generation is not None for w in load.writes)
    in_flight = sum(w.outcome == "in-flight" for w in load.writes)
    print(f"{tag} {len(load.writes)} writes: {acked} acknowledged, {in_flight} in flight; "
          f"after the kills: {'; '.join(leftovers)}")
    assert acked >= ROUNDS * 2, f"{tag} too few writes were acknowledged to prove anything"
    assert in_flight >= ROUNDS, f"{tag} the kills hit no write in flight"
    # And a node that went through all of that still stops cleanly.
    assert proc.stop() == 0, proc.describe()
    assert not check_disk_consistent(one_node.disk)
