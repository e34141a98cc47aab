"""SIGKILL a node while coordinators' replica writes stream parts and heads
into it (RFC 0011 §5), restart it, and nothing applied is lost or torn.

A client drives the node's replica routes with `HttpReplica` (signed with the
cluster key): writes of several sizes (inline, one part, several parts,
overwrites of the same paths at rising generations), parts uploaded one
request at a time in a shuffled order, then the head. The node is SIGKILLed
after a random number of writes, in the middle of the last part of a
multi-part write (its other parts already on disk). After each restart:

- every head the node acknowledged as applied is there (or a higher one of
  ours), and its bytes read back exactly through the part reads;
- on disk: no temp files, no pending rows, no upload rows, no file that no
  row names, every part file whole (`check_disk_consistent`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel
from process_harness import (
    ProcessPool,
    check_disk_consistent,
    count_entries,
    make_nodes,
    meta_db,
    open_meta,
    slot_dirs,
    write_config,
    write_key,
)
from process_harness import single_node_config as process_config

from rimio.cluster.peers import PeerClient
from rimio.cluster.replicas import HttpReplica
from rimio.config import load_keyring
from rimio.core.head import Head
from rimio.core.replica import PartInfo, ReplicaUnavailable
from rimio.core.slots import slot_for_path

# Higher than any layout version this small cluster reaches: never stale.
LATEST = 1_000_000
PART = 64 * 1024
INLINE = 1024
SLOTS = 2048
PATHS = [f"crash/{i}" for i in range(6)]
SIZES = [0, 10, INLINE, PART - 1, PART, 2 * PART + 5, 5 * PART + 3]


async def _chunks(data: bytes, stall: threading.Event | None = None) -> AsyncIterator[bytes]:
    """`data` in 8 KiB chunks; with `stall`: set it halfway and pause there
    (the node is killed in the middle of this part)."""
    for i in range(0, len(data), 8192):
        yield data[i:i + 8192]
        if stall is not None and i >= len(data) // 2:
            stall.set()
            await trio.sleep(0.5)  # the node dies meanwhile; the next chunk finds it gone
            stall = None
        await trio.lowlevel.checkpoint()


def _head(path: str, data: bytes, generation: int) -> Head:
    return Head(kind="meta", path=path, slot_id=slot_for_path(path, SLOTS),
                generation=generation, write_id=f"w{generation}", size_bytes=len(data),
                etag=hashlib.sha256(data).hexdigest(), part_size=PART,
                part_count=-(-len(data) // PART), timestamp=float(generation))


async def _write(replica: HttpReplica, rng: random.Random, head: Head, data: bytes,
                 stall: threading.Event | None = None) -> bool:
    if len(data) <= INLINE:
        return (await replica.apply_head(head, [], data, None, LATEST)).applied
    pieces = [data[i:i + PART] for i in range(0, len(data), PART)]
    order = list(range(len(pieces)))
    rng.shuffle(order)
    parts: dict[int, PartInfo] = {}
    for n, i in enumerate(order):
        last = n == len(order) - 1
        parts[i] = await replica.put_part(head.slot_id, head.path, head.generation, i,
                                          _chunks(pieces[i], stall if last else None))
    offered = [parts[i] for i in sorted(parts)]
    return (await replica.apply_head(head, offered, None, None, LATEST)).applied


async def _read(replica: HttpReplica, head: Head) -> bytes:
    out = bytearray()
    for i in range(head.part_count):
        size = min(PART, head.size_bytes - i * PART)
        async for chunk in replica.read_part(head, i, 0, size):
            out += chunk
    return bytes(out)


@pytest.mark.process
@pytest.mark.timeout(120)
def test_replica_writes_survive_sigkill(rimio_pool: ProcessPool, tmp_path: Path) -> None:
    node = make_nodes(tmp_path, 1)[0]
    key = write_key(tmp_path / "cluster.key")
    config = process_config(node, storage={"part_size_bytes": PART, "inline_max_bytes": INLINE})
    config["cluster"]["key_file"] = str(key)
    conf = write_config(node.disk.parent / "rimio.yaml", config)
    proc = rimio_pool.start_node(conf, node)
    keyring = load_keyring(key)
    rng = random.Random(11)
    generation = 0
    applied: dict[str, tuple[Head, bytes]] = {}
    writes = 0
    recovered = 0  # interrupted replica writes the node cleaned up at start

    for _round in range(3):
        # The kill comes in the middle of the last part of a multi-part write,
        # after a random number of writes: its other parts are on disk already.
        kill_after = rng.randint(3, 25)
        stall = threading.Event()

        def kill(stall: threading.Event = stall) -> None:
            stall.wait(60)
            proc.kill()

        killer = threading.Thread(target=kill)

        async def drive(stall: threading.Event, kill_after: int) -> None:
            nonlocal generation, writes
            client = PeerClient(keyring, connect_timeout=1.0, read_timeout=10.0)
            replica = HttpReplica(node.node_id, node.addr, client)
            try:
                done = 0
                while True:
                    path = rng.choice(PATHS)
                    data = os.urandom(rng.choice(SIZES))
                    generation += 1
                    head = _head(path, data, generation)
                    armed = stall if done >= kill_after and len(data) > PART else None
                    done += 1
                    if await _write(replica, rng, head, data, armed):
                        applied[path] = (head, data)
                        writes += 1
            except ReplicaUnavailable:
                return  # the node died
            finally:
                await client.aclose()

        killer.start()
        trio.run(drive, stall, kill_after)
        killer.join()
        proc.restart(wait_ready=True)
        assert check_disk_consistent(node.disk) == []
        for sd in slot_dirs(node.disk):
            assert count_entries(sd, "pending") == 0
            with open_meta(meta_db(sd)) as db:
                uploads = db.execute("SELECT COUNT(*) FROM file_entries WHERE slot_id = ? AND "
                                     "entry_kind = 'part' AND head_sha256 IS NULL",
                                     (int(sd.name),)).fetchone()[0]
            assert uploads == 0

        async def verify() -> None:
            nonlocal recovered
            client = PeerClient(keyring)
            replica = HttpReplica(node.node_id, node.addr, client)
            try:
                stats = await client.send_signed(node.addr, "GET", "/internal/v1/stats",
                                                 node_id=node.node_id)
                recovered += json.loads(await stats.aread())["recovered_writes"]
                await stats.aclose()
                for path, (head, data) in applied.items():
                    found = (await replica.get_head(head.slot_id, path)).head
                    assert found is not None and found.generation >= head.generation
                    if found == head:
                        assert await _read(replica, head) == data
            finally:
                await client.aclose()

        trio.run(verify)
    assert writes > 10  # the kills came after real work
    assert recovered >= 3  # each kill left a write with parts on disk
