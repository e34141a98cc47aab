"""Suite-wide options: how many chaos seeds to run (`tests/sim/test_chaos.py`,
`tests/sim/test_divergence.py`)."""

from __future__ import annotations

import pytest

DEFAULT_CHAOS_SEEDS = 200
DEFAULT_DIVERGENCE_SEEDS = 4


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "the seeded chaos suite")
    group.addoption("--chaos-seeds", type=int, default=DEFAULT_CHAOS_SEEDS,
                    help="run seeds 0..N-1 of the chaos suite (default %(default)s)")
    group.addoption("--chaos-first-seed", type=int, default=0,
                    help="start the chaos seeds here (with --chaos-seeds: a window)")
    group.addoption("--chaos-seed", type=int, action="append", default=None,
                    help="run only this chaos seed (repeatable): how a failure is replayed")
    group.addoption("--divergence-seeds", type=int, default=DEFAULT_DIVERGENCE_SEEDS,
                    help="run seeds 0..N-1 of the planted-divergence suite "
                         "(tests/sim/test_divergence.py, default %(default)s)")
    group.addoption("--divergence-seed", type=int, action="append", default=None,
                    help="run only this planted-divergence seed (repeatable)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        only = metafunc.config.getoption("--chaos-seed")
        if only:
            seeds = list(only)
        else:
            first = metafunc.config.getoption("--chaos-first-seed")
            seeds = list(range(first, first + metafunc.config.getoption("--chaos-seeds")))
        metafunc.parametrize("chaos_seed", seeds)
    if "divergence_seed" in metafunc.fixturenames:
        only = metafunc.config.getoption("--divergence-seed")
        seeds = list(only) if only else list(range(
            metafunc.config.getoption("--divergence-seeds")))
        metafunc.parametrize("divergence_seed", seeds)
