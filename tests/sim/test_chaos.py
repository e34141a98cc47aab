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


def test_same_seed_gives_the_same_history_byte_for_byte() -> None:
    first = run_seed(7)
    again = run_seed(7)
    assert len(first.history.ops) > 20 and first.faults
    assert repr(first.history) == repr(again.history) and first.faults == again.faults
    assert first.fingerprint() == again.fingerprint()
    assert run_seed(8).fingerprint() != first.fingerprint()


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
    some end unknown, and most succeed."""
    results = [run_seed(seed) for seed in range(20)]
    totals = _totals(results)
    failed = sum(n for (_, outcome), n in totals.items() if outcome is Outcome.FAILED)
    unknown = sum(n for (_, outcome), n in totals.items() if outcome is Outcome.UNKNOWN)
    ok = sum(n for (_, outcome), n in totals.items() if outcome is Outcome.OK)
    assert failed > 20 and unknown > 0 and ok > 2 * failed, totals
    assert all(totals[(kind, Outcome.OK)] > 0 for kind in OpKind), totals
    assert sum(len(r.history.applied) for r in results) > 100
    kinds = {line.split()[1] for r in results for line in r.faults}
    assert {"partition", "one_way", "pause", "crash", "loss"} <= kinds


def test_a_node_that_forgets_its_disk_is_caught() -> None:
    """The whole pipeline, not only the checker, fails when data is lost: a
    planted bug (a crashed node restarts on an empty disk) is flagged as a
    lost write within a few seeds."""
    params = replace(ChaosParams(), forget_disk_on_crash=True)
    caught = [r for r in (run_seed(seed, params) for seed in range(30)) if r.violations]
    assert caught
    assert "lost_write" in {v.rule for r in caught for v in r.violations}
    assert "replay: " in caught[0].report()


def test_replicated_params_run_today() -> None:
    """R = 3 is a parameter: before the replicated path lands, every data
    request answers 503 (failed, never a violation)."""
    result = run_seed(3, replace(ChaosParams(), replicas=3))
    assert not result.violations, result.report()
    outcomes = {op.outcome for op in result.history.ops if op.kind is not OpKind.LIST}
    assert outcomes <= {Outcome.FAILED, Outcome.UNKNOWN}
