"""The coordinator's GET/HEAD and LIST over in-memory replicas (RFC 0011 §7.2-7.3):
the winner by a read quorum, ranges, part fallback, degraded reads, read
repair, and listings while a minority is down."""

import dataclasses

import pytest
import trio
import trio.testing
from coordinator_harness import PART, SETTINGS, Harness, get, put, slot_of

from rimio.core.errors import Gone, NotFound, QuorumLost
from rimio.core.listing import merge_listings
from rimio.core.quorum import SlotPlan
from rimio.ops.read_repair import repair_replica

BIG = bytes(range(256)) * 2  # 512 bytes: 32 parts of 16


async def test_the_quorum_winner_is_served_even_when_this_node_is_behind(
        nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator("n0")
    await nursery.start(coord.run)
    h.kill("n0")
    await put(h.coordinator("n1"), "w/x", BIG)
    h.revive("n0")
    obj, _ = await coord.open_read(slot_of("w/x"), "w/x")
    assert obj.head.generation == 1 and not obj.degraded
    assert set(obj.holders) == {"n1", "n2"}
    assert await get(coord, "w/x") == BIG


async def test_ranges_cross_parts(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "r/x", BIG)
    obj, _ = await coord.open_read(slot_of("r/x"), "r/x")
    for start, end in ((0, 0), (5, 40), (PART - 1, PART), (100, len(BIG) - 1), (0, 511)):
        got = b"".join([c async for c in coord.read(obj, start, end)])
        assert got == BIG[start:end + 1]


async def test_small_objects_come_back_whole_from_open_read(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "s/x", b"small")
    _, data = await coord.open_read(slot_of("s/x"), "s/x", inline_up_to=1024)
    assert data == b"small"
    _, data = await coord.open_read(slot_of("s/x"), "s/x", inline_up_to=-1)
    assert data is None


async def test_a_missing_part_is_read_from_another_holder(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "f/x", BIG)
    h.replicas["n0"].lose_part("f/x", 3)
    h.replicas["n1"].lose_part("f/x", 4)
    assert await get(coord, "f/x") == BIG
    h.replicas["n2"].lose_part("f/x", 3)
    h.replicas["n1"].lose_part("f/x", 3)
    with pytest.raises(QuorumLost):
        await get(coord, "f/x")


async def test_below_a_read_quorum_the_best_head_is_served_degraded(
        nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "dg/x", BIG)
    h.kill("n1", "n2")
    obj, _ = await coord.open_read(slot_of("dg/x"), "dg/x")
    assert obj.degraded
    assert await get(coord, "dg/x") == BIG
    h.kill("n0", known=False)
    with pytest.raises(QuorumLost):
        await coord.open_read(slot_of("dg/x"), "dg/x")


async def test_not_found_and_gone(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    with pytest.raises(NotFound):
        await coord.open_read(slot_of("nf/x"), "nf/x")
    await put(coord, "nf/x", b"abc")
    await coord.delete(slot_of("nf/x"), "nf/x")
    with pytest.raises(Gone):
        await coord.open_read(slot_of("nf/x"), "nf/x")


async def test_read_repair_brings_a_lagging_replica_up_to_the_winner(
        nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator("n0")
    await nursery.start(coord.run)
    await put(coord, "rr/big", b"old" * 20)
    await put(coord, "rr/small", b"v1")
    await put(coord, "rr/gone", b"here")
    h.kill("n2")
    await put(coord, "rr/big", BIG)
    await put(coord, "rr/small", b"v2")
    await put(coord, "rr/new", BIG[:100])
    await coord.delete(slot_of("rr/gone"), "rr/gone")
    h.revive("n2")
    for path in ("rr/big", "rr/small", "rr/new"):
        await get(coord, path)
    with pytest.raises(Gone):
        await get(coord, "rr/gone")
    await trio.testing.wait_all_tasks_blocked()
    lagging = h.replicas["n2"]
    assert lagging.content_of("rr/big") == BIG
    assert lagging.content_of("rr/small") == b"v2"
    assert lagging.content_of("rr/new") == BIG[:100]
    assert lagging.heads["rr/gone"].deleted
    assert coord.stats()["read_repair"]["repaired"] == 4
    # the repaired replica now serves alone
    h.kill("n0", "n1")
    assert await get(coord, "rr/big") == BIG


async def test_read_repair_never_moves_a_replica_backwards(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "bk/x", BIG)
    old, _ = await coord.open_read(slot_of("bk/x"), "bk/x")
    newer = await put(coord, "bk/x", b"two")
    # A repair that was scheduled with the old winner arrives late.
    await repair_replica(coord.ctx, "n2", old)
    assert h.replicas["n2"].heads["bk/x"].generation == newer["generation"]
    assert h.replicas["n2"].content_of("bk/x") == b"two"
    assert h.replicas["n2"].pending == {}


async def test_list_merges_replicas_and_answers_with_a_minority_down(
        nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    for i in range(10):
        await put(coord, f"ls/{i:02d}", bytes([i]) * 3)
    await coord.delete(slot_of("ls/03"), "ls/03")
    h.kill("n1")
    await put(coord, "ls/05", b"newer")
    sources = await coord.gather_listings("ls/", None, 100)
    page = merge_listings(sources, 100, 99, include_deleted=False)
    assert [x.path for x in page.heads] == [f"ls/{i:02d}" for i in range(10) if i != 3]
    by_path = {x.path: x for x in page.heads}
    assert by_path["ls/05"].generation == 2
    h.kill("n2")
    with pytest.raises(QuorumLost):
        await coord.gather_listings("ls/", None, 100)
    assert h.replicas["n0"].calls.count("list_heads") == 1  # refused before asking
    h.revive("n2")
    h.kill("n2", known=False)
    with pytest.raises(QuorumLost):
        await coord.gather_listings("ls/", None, 100)


async def test_a_slow_replica_is_not_waited_for_beyond_the_quorum(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "slow/x", BIG)
    h.replicas["n2"].delay = 3.0
    start = trio.current_time()
    assert await get(coord, "slow/x") == BIG
    assert trio.current_time() - start < 0.5
    assert "read_part" not in h.replicas["n2"].calls


async def test_a_moving_slot_writes_to_targets_and_holders_and_reads_holders(
        nursery: trio.Nursery) -> None:
    h = Harness(nodes=4)

    def moving(slot: int) -> SlotPlan:
        # n3 joins as a target; n2 still holds the slot until n3 confirmed its copy
        return SlotPlan(slot, ("n0", "n1", "n3"), ("n0", "n1", "n2"), 2, 1)

    h.plan_for = moving  # type: ignore[method-assign]
    coord = h.coordinator()
    await nursery.start(coord.run)
    result = await put(coord, "mv/x", BIG)
    assert result["committed_replicas"] == 4
    assert all(r.content_of("mv/x") == BIG for r in h.replicas.values())
    h.kill("n0")
    assert (await put(coord, "mv/x", b"two"))["committed_replicas"] == 3
    h.kill("n3")  # the targets are down to n1: no write quorum of targets
    with pytest.raises(QuorumLost):
        await put(coord, "mv/x", b"three")
    h.revive("n3")
    h.replicas["n3"].calls.clear()
    assert await get(coord, "mv/x") == b"two"
    assert "get_head" not in h.replicas["n3"].calls  # not a holder yet: not read


async def test_read_repair_is_bounded_by_its_backlog(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(settings=dataclasses.replace(SETTINGS, repair_backlog=2, repair_concurrency=1))
    coord = h.coordinator()
    await nursery.start(coord.run)
    h.kill("n2")
    for i in range(5):
        await put(coord, f"bl/{i}", BIG[:40])
    h.revive("n2")
    h.replicas["n2"].delay = 0.01  # repairs take a while: the backlog fills
    for i in range(5):
        await get(coord, f"bl/{i}")
    stats = coord.stats()["read_repair"]
    assert stats["skipped"] == 3
    await trio.sleep(1)
    assert coord.stats()["read_repair"]["repaired"] == 2
    h.replicas["n2"].delay = 0.0
    for i in range(5):  # the next reads find the rest behind again
        await get(coord, f"bl/{i}")
    await trio.testing.wait_all_tasks_blocked()
    assert all(h.replicas["n2"].content_of(f"bl/{i}") == BIG[:40] for i in range(5))
