"""The chaos checker on hand-made histories: clean ones pass, and each rule
flags the anomaly planted for it (a checker that never fails proves nothing)."""

from __future__ import annotations

import hashlib

import pytest

from rimio.core.head import Head
from rimio.testing.chaos_checker import (
    ABSENT,
    Applied,
    FinalRead,
    History,
    Op,
    OpKind,
    Outcome,
    Version,
    check,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


A, B, C = sha(b"a"), sha(b"b"), sha(b"c")


def meta(path: str, generation: int, etag: str, write_id: str = "w") -> Head:
    return Head("meta", path, 7, generation, write_id, size_bytes=1, etag=etag, part_size=1,
                part_count=1)


def tomb(path: str, generation: int) -> Head:
    return Head("tombstone", path, 7, generation, "d")


class Ops:
    """Builds a history one operation at a time, with fresh ids."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, kind: OpKind, path: str, t0: float, t1: float, outcome: Outcome = Outcome.OK,
            **kw: object) -> Op:
        op = Op(len(self.ops), kind, path, "n1", t0, t1, outcome, **kw)  # type: ignore[arg-type]
        self.ops.append(op)
        return op

    def put(self, path: str, t0: float, t1: float, etag: str, generation: int | None,
            outcome: Outcome = Outcome.OK) -> Op:
        version = Version(generation, False, etag) if generation is not None else None
        return self.add(OpKind.PUT, path, t0, t1, outcome, status=201, version=version,
                        sent_etag=etag)

    def delete(self, path: str, t0: float, t1: float, generation: int,
               outcome: Outcome = Outcome.OK) -> Op:
        return self.add(OpKind.DELETE, path, t0, t1, outcome, status=200,
                        version=Version(generation, True))

    def get(self, path: str, t0: float, t1: float, seen: Version, body: str = "",
            degraded: bool = False) -> Op:
        return self.add(OpKind.GET, path, t0, t1, status=200, version=seen, body_etag=body,
                        degraded=degraded)


def clean() -> tuple[Ops, History]:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.get("x", 2, 3, Version(1, False, A), A)
    o.put("x", 4, 5, B, 2)
    o.put("x", 4.5, 6, C, None, Outcome.UNKNOWN)  # may or may not have happened
    o.put("y", 0, 1, A, None, Outcome.FAILED)  # a slot that was unavailable
    o.get("y", 2, 3, ABSENT)
    o.delete("z", 0, 1, 1)
    o.get("z", 2, 3, Version(0, True))  # a 410 that did not say its generation
    o.add(OpKind.LIST, "", 7, 8, listing=(("x", Version(3, False, C)), ("z", Version(1, True))))
    replicas = {r: {7: [meta("x", 3, C), tomb("z", 1)]} for r in ("n1", "n2")}
    history = History(
        o.ops, replicas=replicas, replica_sets={7: ["n1", "n2"]},
        final_reads=[FinalRead("x", Version(3, False, C), C), FinalRead("z", Version(1, True))],
        applied=[Applied("n1", "x", 1), Applied("n2", "x", 1), Applied("n1", "x", 2),
                 Applied("n1", "x", 3), Applied("n2", "x", 3), Applied("n1", "x", 3)],
    )
    return o, history


def test_a_clean_history_passes() -> None:
    assert check(clean()[1]) == []


def test_unknown_and_failed_writes_are_never_acknowledged() -> None:
    o = Ops()
    o.put("x", 0, 1, A, None, Outcome.UNKNOWN)
    o.put("y", 0, 1, A, None, Outcome.FAILED)
    assert check(History(o.ops)) == []


def test_lost_acknowledged_write_is_flagged() -> None:
    o, h = clean()
    lost = o.put("x", 9, 10, A, 4)  # acknowledged at generation 4, final head is 3
    found = check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied))
    assert [(v.rule, v.path, v.ops) for v in found] == [("lost_write", "x", (lost,))]
    assert "older than the acknowledged g4" in str(found[0])


def test_write_missing_everywhere_is_lost() -> None:
    o = Ops()
    o.put("q", 0, 1, A, 1)
    [v] = check(History(o.ops))
    assert v.rule == "lost_write" and "no replica holds" in v.message


def test_resurrected_delete_is_a_lost_write() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.delete("x", 2, 3, 2)
    history = History(o.ops, replicas={"n1": {7: [meta("x", 2, A)]}})  # a meta came back
    [v] = check(history)
    assert v.rule == "lost_write" and "g2:tombstone" in v.message


def test_same_generation_tie_must_land_on_an_acknowledged_write() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.put("x", 0, 1, B, 1)  # two coordinators chose generation 1
    assert check(History(o.ops, replicas={"n1": {7: [meta("x", 1, B)]}})) == []
    [v] = check(History(o.ops, replicas={"n1": {7: [meta("x", 1, C)]}}))
    assert v.rule == "lost_write" and "same generation" in v.message


def test_an_unknown_write_may_win_a_later_tie() -> None:
    # chaos seed 1279: a PUT reached one replica, answered 503 outcome_unknown,
    # and a later PUT chose the same generation from a quorum without that
    # replica; the unknown write's head hash is higher, so it is the final head
    o = Ops()
    o.put("x", 0, 1, C, None, Outcome.UNKNOWN)
    o.put("x", 5, 6, A, 1)
    assert check(History(o.ops, replicas={"n1": {7: [meta("x", 1, C)]}})) == []
    # a failed (not unknown) write never took effect, so it cannot win the tie
    f = Ops()
    f.put("x", 0, 1, C, None, Outcome.FAILED)
    f.put("x", 5, 6, A, 1)
    [v] = check(History(f.ops, replicas={"n1": {7: [meta("x", 1, C)]}}))
    assert v.rule == "lost_write" and "same generation" in v.message


def test_stale_read_is_flagged_with_both_ops() -> None:
    o, h = clean()
    write = o.ops[2]  # x g2 acknowledged at t=5
    read = o.get("x", 5.5, 6, Version(1, False, A), A)
    found = check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied))
    assert [(v.rule, v.ops) for v in found] == [("stale_read", (write, read))]


def test_read_concurrent_with_a_write_may_miss_it() -> None:
    o, h = clean()
    o.get("x", 4.9, 6, Version(1, False, A), A)  # began before g2 was acknowledged
    assert check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied)) == []


def test_degraded_read_may_be_stale() -> None:
    o, h = clean()
    o.get("x", 7, 8, Version(1, False, A), A, degraded=True)
    assert check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied)) == []


def test_read_of_absent_after_acknowledged_write_is_stale() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.get("x", 2, 3, ABSENT)
    found = check(History(o.ops, replicas={"n1": {7: [meta("x", 1, A)]}}))
    assert [v.rule for v in found] == ["stale_read"]


def test_410_without_generation_after_a_put_is_stale() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.get("x", 2, 3, Version(0, True))
    assert [v.rule for v in check(History(o.ops, replicas={"n1": {7: [meta("x", 1, A)]}}))
            ] == ["stale_read"]


def test_410_without_generation_after_a_later_delete_is_fine() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.delete("x", 2, 3, 2)
    o.get("x", 4, 5, Version(0, True))
    assert check(History(o.ops, replicas={"n1": {7: [tomb("x", 2)]}})) == []
    o = Ops()
    o.put("x", 0, 1, A, 3)
    o.delete("x", 2, 3, 2)  # an older delete cannot explain it
    o.get("x", 4, 5, Version(0, True))
    found = check(History(o.ops, replicas={"n1": {7: [meta("x", 3, A)]}}))
    assert [v.rule for v in found] == ["stale_read"]


def test_stale_listing_is_flagged() -> None:
    o, h = clean()
    o.add(OpKind.LIST, "", 9, 10, listing=(("x", Version(1, False, A)),))  # z missing too
    found = check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied))
    assert sorted((v.rule, v.path) for v in found) == [("stale_read", "x"), ("stale_read", "z")]


def test_listing_of_another_prefix_says_nothing_about_x() -> None:
    o, h = clean()
    o.add(OpKind.LIST, "other/", 9, 10, listing=())
    assert check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied)) == []


def test_generation_going_backwards_on_a_replica_is_flagged() -> None:
    _, h = clean()
    applied = [*h.applied, Applied("n2", "x", 2)]  # n2 had applied 3 already
    [v] = check(History(h.ops, h.replicas, h.replica_sets, h.final_reads, applied))
    assert v.rule == "generation_backwards" and "applied generation 2 after 3" in v.message


def test_other_replicas_and_paths_have_their_own_sequences() -> None:
    applied = [Applied("n1", "x", 5), Applied("n2", "x", 1), Applied("n1", "y", 1)]
    assert check(History((), applied=applied)) == []


@pytest.mark.parametrize("n2_heads", [[meta("x", 2, B), tomb("z", 1)], [meta("x", 3, C)],
                                      [meta("x", 3, C, write_id="other"), tomb("z", 1)]])
def test_replicas_that_disagree_after_healing_are_flagged(n2_heads: list[Head]) -> None:
    o, h = clean()
    replicas = {"n1": h.replicas["n1"], "n2": {7: n2_heads}}
    found = check(History(o.ops, replicas, h.replica_sets, h.final_reads, h.applied))
    assert found and {v.rule for v in found} == {"replicas_diverge"}
    assert "slot 7 replicas disagree" in found[0].message


def test_a_replica_outside_the_slots_set_is_not_compared() -> None:
    o, h = clean()
    replicas = {**h.replicas, "n3": {7: [meta("x", 1, A)]}}
    assert check(History(o.ops, replicas, h.replica_sets, h.final_reads, h.applied)) == []


def test_phantom_bytes_are_flagged() -> None:
    o, h = clean()
    bogus = sha(b"never written")
    read = o.get("x", 9, 10, Version(3, False, bogus), bogus)
    found = check(History(o.ops, h.replicas, h.replica_sets, h.final_reads, h.applied))
    assert [(v.rule, v.ops) for v in found] == [("phantom_read", (read,))]


def test_bytes_of_another_path_are_phantom_here() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.get("y", 2, 3, Version(1, False, A), A)
    found = check(History(o.ops, replicas={"n1": {7: [meta("x", 1, A)]}}))
    assert [v.rule for v in found] == ["phantom_read"]


def test_bytes_that_do_not_match_their_etag_are_flagged() -> None:
    o = Ops()
    o.put("x", 0, 1, A, 1)
    o.put("x", 2, 3, B, 2)
    o.get("x", 4, 5, Version(2, False, B), A)  # B's etag, A's bytes
    found = check(History(o.ops, replicas={"n1": {7: [meta("x", 2, B)]}}))
    assert [v.rule for v in found] == ["phantom_read"]


def test_final_reads_are_checked_for_phantoms() -> None:
    _, h = clean()
    bogus = sha(b"rot")
    reads = [FinalRead("x", Version(3, False, C), bogus)]
    found = check(History(h.ops, h.replicas, h.replica_sets, reads, h.applied))
    assert [v.rule for v in found] == ["phantom_read", "phantom_read"]


def test_unknown_put_bytes_may_be_read() -> None:
    o = Ops()
    o.put("x", 0, 1, C, None, Outcome.UNKNOWN)
    o.get("x", 2, 3, Version(1, False, C), C)
    assert check(History(o.ops, replicas={"n1": {7: [meta("x", 1, C)]}})) == []
