"""Clocks never order data (RFC 0004 §7; RFC 0001, "Head order"): a wall clock that jumps an hour back
and forth between writes changes timestamps, never which write wins."""

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

from rimio.config import StorageConfig, single_node_config
from rimio.ops.objects import ObjectService, PutRequest
from rimio.storage.store import LocalStore


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_wall_clock_jumps_do_not_reorder_writes(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "d", storage=StorageConfig(part_size_bytes=4096))
    store = LocalStore([tmp_path / "d"], total_slots=2048, part_size=4096)
    await store.open()
    skew = itertools.cycle([1_000_000.0, 1_000_000.0 - 3600, 1_000_000.0 + 3600, 5.0])
    service = ObjectService(config, store, wall_clock=lambda: next(skew))
    last = b""
    for i in range(12):
        last = f"version {i}".encode() * (1 + i * 500)  # small and streamed sizes
        length = len(last) if i % 2 else None
        out = await service.put(PutRequest("k", _body(last), content_length=length))
        assert out.result["generation"] == i + 1
    obj, _ = await service.open_read("k")
    data = b"".join([c async for c in service.read(obj, 0, obj.head.size_bytes - 1)])
    assert data == last and obj.head.generation == 12
    page = await service.list("", 10, None, False)
    assert [it["generation"] for it in page["items"]] == [12]
    await store.close()
