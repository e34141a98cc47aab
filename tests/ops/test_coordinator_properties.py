"""Hypothesis over interleavings of replica failures (RFC 0011 §7): whatever fails
and when, an acknowledged write is read back by a quorum read (or a newer one
is), no read returns bytes that were never written, generations never go
backwards on any replica, and once everyone is back, read repair leaves
every replica on the same head."""

from dataclasses import dataclass

import trio
import trio.testing
from coordinator_harness import Harness, get, put, slot_of
from hypothesis import given, settings
from hypothesis import strategies as st

from rimio.core.errors import Gone, NotFound, OutcomeUnknown, QuorumLost

PATHS = ("p/a", "p/b")


@dataclass(frozen=True)
class Fault:
    kind: str  # "none", "dead", "silent", "mid_stream", "apply", "apply_lost", "slow"
    after_parts: int = 0


faults = st.one_of(
    st.just(Fault("none")), st.just(Fault("dead")), st.just(Fault("silent")),
    st.builds(Fault, st.just("mid_stream"), st.integers(0, 4)),
    st.just(Fault("apply")), st.just(Fault("apply_lost")), st.just(Fault("slow")))


@dataclass(frozen=True)
class Step:
    path: str
    size: int
    faults: tuple[Fault, Fault, Fault]
    coordinator: int
    delete: bool
    read_after: bool  # a read repairs: without one, replicas stay diverged


steps = st.lists(st.builds(
    Step, st.sampled_from(PATHS), st.sampled_from([0, 3, 8, 9, 40, 100]),
    st.tuples(faults, faults, faults), st.integers(0, 2),
    st.sampled_from([False, False, False, True]), st.booleans()),
    min_size=1, max_size=8)


def _apply(h: Harness, step: Step) -> None:
    for name, fault in zip(h.names, step.faults, strict=True):
        r = h.replicas[name]
        h.revive(name)
        r.fail_after_parts = None
        r.apply_fails = r.apply_then_fail = False
        r.delay = 0.0
        if fault.kind == "dead":
            h.kill(name)
        elif fault.kind == "silent":
            h.kill(name, known=False)
        elif fault.kind == "mid_stream":
            r.fail_after_parts = r.parts_stored + fault.after_parts
        elif fault.kind == "apply":
            r.apply_fails = True
        elif fault.kind == "apply_lost":
            r.apply_then_fail = True
        elif fault.kind == "slow":
            r.delay = 0.3


def _heal(h: Harness) -> None:
    for name in h.names:
        r = h.replicas[name]
        h.revive(name)
        r.fail_after_parts = None
        r.apply_fails = r.apply_then_fail = False
        r.delay = 0.0


async def _scenario(history: list[Step]) -> None:
    h = Harness()
    coords = [h.coordinator(n) for n in h.names]
    written: dict[str, set[bytes]] = {p: {b""} for p in PATHS}  # every body ever sent
    acked: dict[str, int] = {}  # path → highest acknowledged generation
    seen: dict[str, dict[str, int]] = {n: {} for n in h.names}  # replica → path → generation
    async with trio.open_nursery() as nursery:
        for c in coords:
            await nursery.start(c.run)
        for i, step in enumerate(history):
            _apply(h, step)
            coord = coords[step.coordinator]
            data = bytes([i % 251 + 1]) * step.size
            written[step.path].add(data)
            try:
                if step.delete:
                    result = (await coord.delete(slot_of(step.path), step.path)).result
                else:
                    result = await put(coord, step.path, data)
                    # A quorum of heads meets every earlier write quorum:
                    # the generation rises past every acknowledged one.
                    assert int(str(result["generation"])) > acked.get(step.path, 0)
                gen = int(str(result["generation"]))
                acked[step.path] = max(acked.get(step.path, 0), gen)
            except (QuorumLost, OutcomeUnknown, NotFound):
                pass
            # A quorum read right away sees the acknowledged write or a newer one.
            for path, gen in acked.items() if step.read_after else ():
                try:
                    obj, _ = await coord.open_read(slot_of(path), path)
                except QuorumLost:
                    continue
                except NotFound:
                    raise AssertionError(f"{path}: acknowledged generation {gen} lost") from None
                except Gone:
                    continue
                if not obj.degraded:
                    assert obj.head.generation >= gen
            for name, r in h.replicas.items():
                for path, head in r.heads.items():
                    assert head.generation >= seen[name].get(path, 0), "a replica went back"
                    seen[name][path] = head.generation
        _heal(h)
        await trio.sleep(60)  # (virtual) every late apply and repair has finished
        for path in PATHS:
            try:
                data = await get(coords[0], path)
            except NotFound:
                assert path not in acked
                continue
            except Gone:
                continue
            assert data in written[path], "a read returned bytes never written"
            obj, _ = await coords[0].open_read(slot_of(path), path)
            assert obj.head.generation >= acked.get(path, 0)
        await trio.sleep(60)
        for path in PATHS:
            heads = {r.heads.get(path) for r in h.replicas.values()}
            if any(x is not None for x in heads):
                assert len(heads) == 1, f"{path}: replicas differ after read repair: {heads}"
        nursery.cancel_scope.cancel()


@settings(max_examples=150, deadline=None)
@given(steps)
def test_acknowledged_writes_survive_any_interleaving_of_failures(history: list[Step]) -> None:
    trio.run(_scenario, history, clock=trio.testing.MockClock(autojump_threshold=0))
