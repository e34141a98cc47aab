"""ObjectService with a Coordinator: a slot that is this node's alone stays on the
store's fast path; every other slot goes through the coordinator, with the
same client contract (results, replays, Content-Length and size checks,
404/410, listings)."""

import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from coordinator_harness import INLINE, PART, TOTAL_SLOTS, Harness

from rimio.config import NodeConfig, ReplicationConfig, StorageConfig, single_node_config
from rimio.core.errors import BadRequest, Gone, NotFound, PayloadTooLarge
from rimio.core.quorum import SlotPlan
from rimio.ops.coordinator import CoordinatedObject, settings_for
from rimio.ops.objects import ObjectService, PutRequest
from rimio.storage.store import LocalStore

ME = "node-1"
MAX_OBJECT = 4096


def _config(data: Path) -> NodeConfig:
    config = single_node_config(data, node_id=ME, storage=StorageConfig(
        part_size_bytes=PART * 1024, max_object_bytes=MAX_OBJECT))
    cluster = config.cluster
    replication = ReplicationConfig(replicas=1, min_write_replicas=1, total_slots=TOTAL_SLOTS)
    cluster = dataclasses.replace(cluster, replication=replication)
    return dataclasses.replace(config, cluster=cluster)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[NodeConfig, LocalStore]]:
    config = _config(tmp_path / "d")
    s = LocalStore(config.spec.disks, total_slots=TOTAL_SLOTS,
                   part_size=config.cluster.storage.part_size_bytes)
    await s.open()
    yield config, s
    await s.close()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 10):
        yield data[i:i + 10]


def _req(path: str, data: bytes, length: int | None = -1, write_id: str | None = None) -> PutRequest:
    return PutRequest(path, _body(data), len(data) if length == -1 else length, write_id)


async def _read(service: ObjectService, path: str) -> bytes:
    obj, _ = await service.open_read(path)
    if obj.head.size_bytes == 0:
        return b""
    return b"".join([c async for c in service.read(obj, 0, obj.head.size_bytes - 1)])


async def test_replicated_slots_go_through_the_coordinator(
        store: tuple[NodeConfig, LocalStore], nursery: trio.Nursery) -> None:
    config, local = store
    h = Harness()
    coord = h.coordinator(ME)
    await nursery.start(coord.run)
    clock = itertools.count(1000.0)
    service = ObjectService(config, local, wall_clock=lambda: float(next(clock)),
                            coordinator=coord)
    assert service.route("a/x") == (service.resolve("a/x"), None)
    assert service.resolve("a/x").replicas == h.names
    big = bytes(range(200))
    for path, data, length in (("a/small", b"four", -1), ("a/big", big, -1),
                               ("a/nolength", big, None), ("a/empty", b"", -1)):
        outcome = await service.put(_req(path, data, length))
        assert outcome.result["committed_replicas"] == 3 and not outcome.replay
        assert await _read(service, path) == data
        assert h.replicas["n1"].content_of(path) == data
    obj, inline = await service.open_read("a/small", inline_up_to=1024)
    assert isinstance(obj, CoordinatedObject) and inline == b"four" and not obj.degraded
    await service.check_readable(obj)
    replay = await service.put(_req("a/small", b"other", write_id="w"))
    assert not replay.replay
    again = await service.put(_req("a/small", b"other!", write_id="w"))
    assert again.replay
    # The recorded result travels with the head, before the applies answered:
    # a replay reports the quorum the write needed, not the count it reached.
    assert again.result == replay.result | {"committed_replicas": 2}
    with pytest.raises(BadRequest):
        await service.put(_req("a/short", b"abc", length=INLINE))
    with pytest.raises(BadRequest):
        await service.put(_req("a/short2", big, length=len(big) - 1))
    with pytest.raises(PayloadTooLarge):
        await service.put(_req("a/huge", b"x" * (MAX_OBJECT + 1), length=None))
    with pytest.raises(NotFound):
        await service.open_read("a/short")
    assert h.pending() == 0
    deleted = await service.delete("a/big")
    assert deleted.result["deleted"] is True
    with pytest.raises(Gone):
        await service.open_read("a/big")
    page = await service.list("a/", 100, None, include_deleted=False)
    assert [i["path"] for i in page["items"]] == ["a/empty", "a/nolength", "a/small"]
    assert await local.list_heads("", None, 10, include_deleted=True) == []  # not this node's


async def test_a_slot_of_this_node_alone_stays_on_the_store(
        store: tuple[NodeConfig, LocalStore], nursery: trio.Nursery) -> None:
    config, local = store
    h = Harness()

    def mine(slot: int) -> SlotPlan:
        return SlotPlan(slot, (ME,), (ME,), 1, 1)

    h.plan_for = mine  # type: ignore[method-assign]
    coord = h.coordinator(ME)
    service = ObjectService(config, local, coordinator=coord)
    await service.put(_req("m/x", b"local bytes"))
    assert await _read(service, "m/x") == b"local bytes"
    assert (await local.get_object(service.resolve("m/x").slot_id, "m/x")) is not None
    assert all(r.calls == [] for r in h.replicas.values())


async def test_degraded_reads_are_marked(store: tuple[NodeConfig, LocalStore],
                                         nursery: trio.Nursery) -> None:
    config, local = store
    h = Harness()
    coord = h.coordinator(ME)
    await nursery.start(coord.run)
    service = ObjectService(config, local, coordinator=coord)
    await service.put(_req("d/x", b"data"))
    h.kill("n0", "n1")
    obj, _ = await service.open_read("d/x")
    assert isinstance(obj, CoordinatedObject) and obj.degraded



def test_settings_follow_the_storage_config() -> None:
    settings = settings_for(StorageConfig(part_size_bytes=8192, inline_max_bytes=65536,
                                          max_object_bytes=10**9))
    assert (settings.inline_max_bytes, settings.part_size, settings.max_object_bytes) == (
        8192, 8192, 10**9)
