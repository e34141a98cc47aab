"""The coordinator's PUT and DELETE over in-memory replicas (RFC 0011 §7.1):
quorum acknowledgement, refusal when too few are reachable, aborts that leave
nothing visible, outcome unknown, replay at any node, preconditions,
generations, concurrent writers, dropped laggards and stale layouts."""

import pytest
import trio
from coordinator_harness import Harness, chunks, get, put, slot_of

from rimio.core.errors import (
    Conflict,
    Gone,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    QuorumLost,
)
from rimio.core.writes import Precondition

BIG = bytes(range(256)) * 3  # 768 bytes: 48 parts of 16
SMALL = b"tiny"


async def test_put_reaches_every_replica_and_reads_back(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    for path, data in (("a/small", SMALL), ("a/big", BIG), ("a/empty", b"")):
        result = await put(coord, path, data)
        assert result["committed_replicas"] == 3
        assert result["generation"] == 1
        for replica in h.replicas.values():
            assert replica.content_of(path) == data
        assert await get(h.coordinator("n2"), path) == data
    assert h.pending() == 0


async def test_one_known_dead_of_three_still_acknowledges_with_two(
        nursery: trio.Nursery) -> None:
    h = Harness()
    h.kill("n2")
    coord = h.coordinator()
    await nursery.start(coord.run)
    for path, data in (("x/small", SMALL), ("x/big", BIG)):
        result = await put(coord, path, data)
        assert result["committed_replicas"] == 2
    assert h.replicas["n2"].calls == []  # known dead: never asked


async def test_one_unknown_dead_of_three_still_acknowledges_with_two(
        nursery: trio.Nursery) -> None:
    h = Harness()
    h.kill("n1", known=False)
    coord = h.coordinator()
    await nursery.start(coord.run)
    result = await put(coord, "y/big", BIG)
    assert result["committed_replicas"] == 2
    assert h.replicas["n1"].heads == {}


async def test_two_known_dead_refuse_at_once_and_leave_nothing(nursery: trio.Nursery) -> None:
    h = Harness()
    h.kill("n1", "n2")
    coord = h.coordinator()
    await nursery.start(coord.run)
    with pytest.raises(QuorumLost):
        await put(coord, "q/big", BIG)
    assert h.replicas["n0"].calls == []  # refused before asking anyone
    h.revive("n1", "n2")
    with pytest.raises(NotFound):
        await get(coord, "q/big")


async def test_two_unknown_dead_lose_quorum_and_nothing_is_visible_after(
        nursery: trio.Nursery) -> None:
    h = Harness()
    h.kill("n1", "n2", known=False)
    coord = h.coordinator()
    await nursery.start(coord.run)
    for path, data in (("u/big", BIG), ("u/small", SMALL)):
        with pytest.raises(QuorumLost):
            await put(coord, path, data)
    h.revive("n1", "n2")
    for path in ("u/big", "u/small"):
        with pytest.raises(NotFound):
            await get(coord, path)
    assert h.pending() == 0


async def test_failure_mid_stream_below_quorum_aborts_everywhere(nursery: trio.Nursery) -> None:
    h = Harness()
    h.replicas["n1"].fail_after_parts = 3
    h.replicas["n2"].fail_after_parts = 5
    coord = h.coordinator()
    await nursery.start(coord.run)
    with pytest.raises(QuorumLost):
        await put(coord, "m/big", BIG)
    assert h.pending() == 0
    assert all(r.heads == {} for r in h.replicas.values())
    assert "abort" in h.replicas["n0"].calls


async def test_one_replica_failing_mid_stream_is_dropped_and_cleaned_up(
        nursery: trio.Nursery) -> None:
    h = Harness()
    h.replicas["n2"].fail_after_parts = 4
    coord = h.coordinator()
    await nursery.start(coord.run)
    result = await put(coord, "d/big", BIG)
    assert result["committed_replicas"] == 2
    assert h.replicas["n2"].heads == {}
    await trio.testing.wait_all_tasks_blocked()
    assert h.replicas["n2"].pending == {}  # its parts were aborted in the background


async def test_a_replica_storing_other_bytes_is_dropped(nursery: trio.Nursery) -> None:
    h = Harness()
    h.replicas["n1"].corrupt_parts = True
    coord = h.coordinator()
    await nursery.start(coord.run)
    result = await put(coord, "c/big", BIG)
    assert result["committed_replicas"] == 2
    assert h.replicas["n1"].heads == {}


async def test_a_body_error_aborts_the_parts(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)

    async def broken() -> object:
        async for chunk in chunks(BIG[:100]):
            yield chunk
        raise ValueError("client went away")

    with pytest.raises(ValueError):
        await coord.put(slot_of("b/x"), "b/x", broken())  # type: ignore[arg-type]
    assert h.pending() == 0
    assert all(r.heads == {} for r in h.replicas.values())


@pytest.mark.parametrize("data", [SMALL, BIG])
async def test_apply_on_too_few_is_outcome_unknown(nursery: trio.Nursery, data: bytes) -> None:
    h = Harness()
    h.replicas["n1"].apply_fails = True
    h.replicas["n2"].apply_fails = True
    coord = h.coordinator()
    await nursery.start(coord.run)
    with pytest.raises(OutcomeUnknown) as caught:
        await put(coord, "o/x", data)
    assert caught.value.code == "outcome_unknown"
    assert "may or may not" in caught.value.message
    assert h.replicas["n0"].content_of("o/x") == data  # visible on one: hence unknown


async def test_applied_but_answer_lost_counts_as_unknown_not_as_lost(
        nursery: trio.Nursery) -> None:
    h = Harness()
    for n in ("n1", "n2"):
        h.replicas[n].apply_then_fail = True
    coord = h.coordinator()
    await nursery.start(coord.run)
    with pytest.raises(OutcomeUnknown):
        await put(coord, "l/x", SMALL)


async def test_replay_at_another_coordinator_and_conflict_with_the_other_operation(
        nursery: trio.Nursery) -> None:
    h = Harness()
    first = h.coordinator("n0")
    await nursery.start(first.run)
    result = await put(first, "r/x", BIG, write_id="w-1")
    other = h.coordinator("n2")
    again = await other.put(slot_of("r/x"), "r/x", b"different", write_id="w-1")
    assert again.replay
    assert again.result["generation"] == result["generation"]
    assert again.result["etag"] == result["etag"]
    assert "operation" not in again.result
    with pytest.raises(Conflict):
        await other.delete(slot_of("r/x"), "r/x", write_id="w-1")
    assert await get(other, "r/x") == BIG


async def test_replay_when_only_one_replica_recorded_the_result(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "r/one", SMALL, write_id="w-2")
    for n in ("n1", "n2"):
        h.replicas[n].results.clear()
    again = await h.coordinator("n1").put(slot_of("r/one"), "r/one", b"other", write_id="w-2")
    assert again.replay


async def test_generation_is_one_above_the_quorum_max(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    generations = []
    for i in range(5):
        if i == 2:
            h.kill("n1")
        if i == 4:
            h.revive("n1")
        generations.append((await put(coord, "g/x", SMALL + bytes([i])))["generation"])
    assert generations == sorted(generations)
    assert len(set(generations)) == 5


async def test_precondition_is_checked_against_the_quorum_winner(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    first = await put(coord, "p/x", SMALL)
    # n0 (this node) missed a newer write: the precondition sees the quorum's winner.
    h.replicas["n0"].heads.pop("p/x")
    slot = slot_of("p/x")
    with pytest.raises(PreconditionFailed):
        await coord.put(slot, "p/x", b"new", precondition=Precondition(if_none_match_any=True))
    with pytest.raises(PreconditionFailed):
        await coord.put(slot, "p/x", b"new", precondition=Precondition(if_match=("nope",)))
    ok = await coord.put(slot, "p/x", b"new", precondition=Precondition(
        if_match=(str(first["etag"]),)))
    assert ok.result["generation"] == 2


async def test_delete_writes_a_tombstone_then_answers_as_before(nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    slot = slot_of("del/x")
    with pytest.raises(NotFound):
        await coord.delete(slot, "del/x")
    await put(coord, "del/x", BIG)
    gone = await coord.delete(slot, "del/x", write_id="d-1")
    assert gone.result == {"path": "del/x", "slot_id": slot, "generation": 2, "deleted": True,
                           "committed_replicas": 3}
    again = await h.coordinator("n1").delete(slot, "del/x")
    assert not again.replay and again.result["generation"] == 2
    replay = await h.coordinator("n1").delete(slot, "del/x", write_id="d-1")
    assert replay.replay and replay.result["generation"] == 2
    with pytest.raises(Gone):
        await get(coord, "del/x")
    assert all(r.heads["del/x"].deleted for r in h.replicas.values())


async def test_concurrent_writers_through_three_coordinators_converge(
        nursery: trio.Nursery) -> None:
    h = Harness()
    coords = [h.coordinator(n) for n in h.names]
    for c in coords:
        await nursery.start(c.run)
    h.replicas["n1"].delay = 0.001
    acked: list[dict[str, object]] = []

    async def writer(i: int) -> None:
        data = bytes([i]) * (40 + i)
        acked.append(await put(coords[i % 3], "cc/x", data))

    async with trio.open_nursery() as writers:
        for i in range(6):
            writers.start_soon(writer, i)
    heads = {r.heads["cc/x"].sha256 for r in h.replicas.values()}
    assert len(heads) == 1
    final = h.replicas["n0"].heads["cc/x"]
    assert final.generation >= max(int(str(a["generation"])) for a in acked)
    assert len({r.content_of("cc/x") for r in h.replicas.values()}) == 1


async def test_a_laggard_is_dropped_without_stalling_the_write(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.replicas["n2"].delay = 5.0  # far behind: its buffer stays full
    coord = h.coordinator()
    await nursery.start(coord.run)
    start = trio.current_time()
    result = await put(coord, "lag/x", BIG * 4)
    assert result["committed_replicas"] == 2
    # bounded by the lag grace and the head grace, not by the laggard's pace
    assert trio.current_time() - start < 10
    assert h.replicas["n2"].heads == {}


async def test_a_laggard_the_write_needs_is_waited_for(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.kill("n1")
    h.replicas["n2"].delay = 2.0  # slower than the lag grace, but the write needs it
    coord = h.coordinator()
    await nursery.start(coord.run)
    result = await put(coord, "lag/y", BIG)
    assert result["committed_replicas"] == 2


async def test_stale_layout_refreshes_and_retries_the_apply(nursery: trio.Nursery) -> None:
    h = Harness()
    for r in h.replicas.values():
        r.layout_version = 2
    coord = h.coordinator()
    await nursery.start(coord.run)
    for path, data in (("s/small", SMALL), ("s/big", BIG)):
        result = await put(coord, path, data)
        assert result["committed_replicas"] == 3
    assert h.refreshes == 1
    assert h.layout_version == 2


async def test_stale_layout_twice_is_not_acknowledged(nursery: trio.Nursery) -> None:
    h = Harness()

    async def no_refresh() -> None:
        h.refreshes += 1

    h.refresh_layout = no_refresh  # type: ignore[method-assign]
    for r in h.replicas.values():
        r.layout_version = 5
    coord = h.coordinator()
    await nursery.start(coord.run)
    with pytest.raises((QuorumLost, OutcomeUnknown)):
        await put(coord, "s/never", SMALL)
    assert all(r.heads == {} for r in h.replicas.values())


async def test_a_write_whose_head_lost_everywhere_is_acknowledged_as_overwritten(
        nursery: trio.Nursery) -> None:
    h = Harness()
    coord = h.coordinator()
    await nursery.start(coord.run)
    await put(coord, "ov/x", SMALL)
    # A concurrent writer raced ahead between our head poll and our apply.
    real_get = h.replicas["n0"].get_head

    async def race(slot: int, path: str, write_id: str | None = None):  # type: ignore[no-untyped-def]
        answer = await real_get(slot, path, write_id)
        h.replicas["n0"].get_head = real_get  # type: ignore[method-assign]
        await put(h.coordinator("n1"), path, b"newer!!")
        return answer

    h.replicas["n0"].get_head = race  # type: ignore[method-assign]
    for r in ("n1", "n2"):
        h.replicas[r].delay = 0.0
    result = await put(coord, "ov/x", b"older", streamed=False)
    assert result["committed_replicas"] >= 2
    assert await get(coord, "ov/x") in (b"newer!!", b"older")
    assert len({r.heads["ov/x"].sha256 for r in h.replicas.values()}) == 1



async def test_a_doomed_stream_stops_reading_the_body(nursery: trio.Nursery) -> None:
    h = Harness()
    h.replicas["n1"].fail_after_parts = 1
    h.replicas["n2"].fail_after_parts = 1
    coord = h.coordinator()
    await nursery.start(coord.run)
    read = 0

    async def body() -> object:
        nonlocal read
        async for chunk in chunks(BIG * 10):
            read += len(chunk)
            yield chunk

    with pytest.raises(QuorumLost):
        await coord.put(slot_of("doom/x"), "doom/x", body())  # type: ignore[arg-type]
    assert read < len(BIG)
    assert h.pending() == 0
