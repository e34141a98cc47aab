"""The seeded chaos suite: full nodes under faults, judged by the checker.

Each seed is one `rimio.testing.chaos.run_seed` scenario (a few simulated
seconds of client operations under a seeded fault schedule, then healing);
its history must pass `rimio.testing.chaos_checker.check`. Seeds 0..199 run
by default; `--chaos-seeds N` runs more (`nox -s chaos -- --seeds N`), and
`--chaos-seed S` replays one. A failing seed prints its faults, the
violations with the operations involved, and the replay command.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rimio.testing.chaos import ChaosParams, ChaosResult, run_seed
from rimio.testing.chaos_checker import OpKind, Outcome

pytestmark = pytest.mark.sim


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """The nodes log every refused request; thousands of lines per seed
    would only slow the suite down."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def test_chaos_seed(chaos_seed: int) -> None:
    result = run_seed(chaos_seed)
    assert not result.violations, result.report()


# One replica per slot (the suite's default is R = 3).
SHARDED = replace(ChaosParams(), replicas=1)


@pytest.mark.parametrize("params", [ChaosParams(), SHARDED], ids=["R3", "R1"])
def test_same_seed_gives_the_same_history_byte_for_byte(params: ChaosParams) -> None:
    first = run_seed(7, params)
    again = run_seed(7, params)
    assert len(first.history.ops) > 20 and first.faults
    assert repr(first.history) == repr(again.history) and first.faults == again.faults
    assert first.fingerprint() == again.fingerprint()
    assert run_seed(8, params).fingerprint() != first.fingerprint()


def test_a_seed_replays_in_another_process() -> None:
    """Nothing depends on the process: not string hashing, not addresses."""
    code = ("import logging; logging.disable(logging.CRITICAL)\n"
            "from rimio.testing.chaos import run_seed\n"
            "print(run_seed(11).fingerprint())")
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == run_seed(11).fingerprint()


def _totals(results: list[ChaosResult]) -> Counter[tuple[OpKind, Outcome]]:
    return Counter((op.kind, op.outcome) for r in results for op in r.history.ops)


def test_the_faults_bite() -> None:
    """The schedule is not a no-op: across a few seeds some operations fail,
    and most succeed (with one replica per slot, where a
    fault is felt most directly)."""
    results = [run_seed(seed, SHARDED) for seed in range(20)]
    totals = _totals(results)
    failed = sum(n for (_, outcome), n in totals.items() if outcome is Outcome.FAILED)
    ok = sum(n for (_, outcome), n in totals.items() if outcome is Outcome.OK)
    # (outcome-unknown answers are rare on the coordinated path: they need a
    # write that reached some replicas and not W, so they are not required)
    assert failed > 20 and ok > 2 * failed, totals
    assert all(totals[(kind, Outcome.OK)] > 0 for kind in OpKind), totals
    assert sum(len(r.history.applied) for r in results) > 100
    kinds = {line.split()[1] for r in results for line in r.faults}
    assert {"partition", "one_way", "pause", "crash", "loss"} <= kinds


def test_a_node_that_forgets_its_disk_is_caught() -> None:
    """The whole pipeline, not only the checker, fails when data is lost: a
    planted bug (a crashed node restarts on an empty disk) is flagged as a
    lost write within a few seeds (with one replica per slot: with three, the
    other replicas keep the data, which is what replication is for)."""
    params = replace(SHARDED, forget_disk_on_crash=True)
    caught = [r for r in (run_seed(seed, params) for seed in range(30)) if r.violations]
    assert caught
    assert "lost_write" in {v.rule for r in caught for v in r.violations}
    assert "replay: " in caught[0].report()


def test_the_suite_runs_the_replicated_path() -> None:
    """The suite's default is R = 3, W = 2: writes and reads succeed through
    the quorum path, not only fail."""
    assert ChaosParams().replicas == 3
    result = run_seed(3)
    assert not result.violations, result.report()
    ok = Counter(op.kind for op in result.history.ops if op.outcome is Outcome.OK)
    assert ok[OpKind.PUT] > 5 and ok[OpKind.GET] > 5, ok


def test_layout_changes_move_data_under_faults() -> None:
    """A seed whose schedule joins the spare and then decommissions a
    founder: the spare receives copies (its applies are observed), the
    layout comes to rest (else `layout_not_at_rest`), and the checker finds
    nothing, judged against the final layout's holders."""
    result = run_seed(34)
    assert not result.violations, result.report()
    changes = [" ".join(line.split()[1:]) for line in result.faults
               if line.split()[1] in ("join", "decommission")]
    assert changes == ["join n4", "decommission n1 via n1"], result.faults
    assert any(a.replica == "n4" for a in result.history.applied)
    holders = {n for nodes in result.history.replica_sets.values() for n in nodes}
    assert "n4" in holders and "n1" not in holders, holders
