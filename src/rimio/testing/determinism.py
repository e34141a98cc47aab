"""What a simulation does to make trio's scheduling a function of its seed.

trio shuffles each batch of ready tasks with `trio._core._run._r`, and the
batch's order before the shuffle depends on memory addresses (deadline ties,
sets of tasks). `seed_trio_scheduler` switches on the mode trio itself uses
under Hypothesis (each batch sorted by task creation order before the
shuffle) and seeds the shuffle. These are trio private names (checked with
trio 0.35); this is the one place that touches them.
"""

from __future__ import annotations

import trio


def seed_trio_scheduler(seed: int) -> None:
    run = trio._core._run
    setattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 - a Final in trio
    run._r.seed(seed)
