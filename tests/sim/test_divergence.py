"""Planted divergence (issue 8 item 9, RFC 0014 §7): replicas that disagree
in every way converge by anti-entropy alone within a bounded number of
rounds, and a flipped bit is never served.

Each seed plants 36 divergences on a simulated 3-node cluster (R = 3), every
kind of `rimio.testing.divergence.Kind` four times (see that module for who
heals what, and why the bound is N - 1 node-rounds). Seeds 0..3 run by
default; `--divergence-seeds N` runs more, `--divergence-seed S` replays one.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.parts import part_count
from rimio.testing.chaos import ChaosCluster
from rimio.testing.divergence import (
    BYTE_KINDS,
    CONVERGENCE_BOUND,
    DAMAGED_KINDS,
    DIVERGENCE_PARAMS,
    FLIPPED_KINDS,
    HEAD_KINDS,
    DivergenceResult,
    Kind,
    plan_divergence,
    play_divergence,
    run_divergence_seed,
    run_in_sim,
)

pytestmark = pytest.mark.sim

PARAMS = DIVERGENCE_PARAMS
NODES = ("n1", "n2", "n3")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Every quarantined part is logged at error level, by design."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def test_planted_divergence_converges(divergence_seed: int) -> None:
    result = run_divergence_seed(divergence_seed)
    assert not result.problems, result.report()
    kinds = Counter(p.kind for p in result.plants)
    assert set(kinds) == set(Kind) and min(kinds.values()) == 4, kinds
    # converged by anti-entropy within the bound, before any read; a second
    # sweep had nothing left to move
    assert result.rounds_to_converge is not None
    assert result.rounds_to_converge <= CONVERGENCE_BOUND, result.report()
    assert result.moved_first >= sum(kinds[k] for k in HEAD_KINDS)
    assert result.moved_second == result.failed_second == 0
    # only a damaged source failed a transfer, at most twice (its holder's
    # push and the stale replica's pull)
    assert result.failed_first <= 2 * kinds[Kind.DAMAGED_SOURCE]
    # every damaged copy was read, refused, and fetched again; every flipped
    # bit (in a file or a row) was quarantined
    assert result.refetched >= sum(kinds[k] for k in DAMAGED_KINDS)
    assert result.quarantined == sum(kinds[k] for k in FLIPPED_KINDS)
    assert result.reads.keys() <= {"200", "410"}, result.reads


def test_without_anti_entropy_the_replicas_stay_apart() -> None:
    """The suite tests anti-entropy, not the reads that come after it: with
    no round, the planted heads are still apart when they are compared."""
    result = run_in_sim(3, lambda cluster: play_divergence(cluster, 3, 18, sweeps=0))
    assert "not converged after 0 sweeps" in result.problems, result.report()
    assert result.rounds_to_converge is None


def test_with_the_check_off_wrong_bytes_are_caught() -> None:
    """The never-served check has teeth: with verified reads switched off (a
    planted bug), a damaged copy is served as a good object, and the suite
    says so."""

    async def scenario(cluster: ChaosCluster) -> DivergenceResult:
        for host in cluster.hosts.values():
            assert host.node is not None
            host.node.store.verify_reads = False
        return await play_divergence(cluster, 4, 18)

    result = run_in_sim(4, scenario)
    assert any(p.startswith("SERVED WRONG BYTES") for p in result.problems), result.report()


def test_the_same_seed_runs_the_same_way() -> None:
    first, again = run_divergence_seed(5, paths=16), run_divergence_seed(5, paths=16)
    assert first.report() == again.report()


@given(st.integers(0, 2**32), st.integers(1, 64))
def test_a_plan_mixes_every_kind_and_damages_real_bytes(seed: int, paths: int) -> None:
    plants = plan_divergence(random.Random(seed), NODES, paths, part_size=PARAMS.part_size,
                             inline_max=PARAMS.inline_max_bytes)
    kinds = Counter(p.kind for p in plants)
    assert len(plants) == paths and len({p.path for p in plants}) == paths
    assert max(kinds.values()) - min(kinds.get(k, 0) for k in Kind) <= 1
    for p in plants:
        assert set(p.nodes) <= set(NODES)
        assert len(p.nodes) == (2 if p.kind in (Kind.MISSING_ON_ONE, Kind.STALE_GENERATION,
                                                Kind.DAMAGED_SOURCE) else 1)
        if p.kind in BYTE_KINDS:
            assert p.size == p.base_size > 0
        if p.kind in DAMAGED_KINDS:
            assert p.size > 0 and not p.tombstone and p.damaged in p.nodes
            assert 0 <= p.part < part_count(p.size, PARAMS.part_size)
            assert p.bit < 8 * min(PARAMS.part_size, p.size - p.part * PARAMS.part_size)
        else:
            assert not p.damaged
        if p.kind is Kind.INLINE_CORRUPTED:
            assert p.size <= PARAMS.inline_max_bytes
        if p.kind in (Kind.PART_MISSING, Kind.PART_FLIPPED):
            assert p.size > PARAMS.inline_max_bytes  # in part files
        if p.kind in (Kind.MISSING_ON_TWO, Kind.TOMBSTONE_SAME_GENERATION):
            assert p.tombstone and p.size == 0
