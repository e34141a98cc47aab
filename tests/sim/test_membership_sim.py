"""Seeded simulations of SWIM clusters over the in-memory network.

Each test builds a `SimCluster` inside a trio run driven by pytest-trio's
`autojump_clock` (a `MockClock(autojump_threshold=0)`), injects faults and
checks what every member sees. Minutes of simulated time cost milliseconds to
a few seconds of wall time, so the seeds below add up to a few hundred
scenarios.
"""

from __future__ import annotations

import random

import pytest
import trio.testing

from rimio.core import frames as fr
from rimio.core.frames import Status
from rimio.core.swim import SwimConfig
from rimio.testing.simcluster import LinkProfile, SimCluster, SimTimeout

pytestmark = pytest.mark.sim

Clock = trio.testing.MockClock


async def converged(c: SimCluster, within: float = 15.0) -> float:
    """Simulated seconds until every running node sees all running nodes alive;
    raises `SimTimeout` (naming the seed) if that takes longer than `within`."""
    return await c.run_until_true(c.converged_alive, within=within)


@pytest.mark.parametrize("seed", range(60))
async def test_cluster_converges_to_all_alive(seed: int, autojump_clock: Clock) -> None:
    c = SimCluster(3 + seed % 8, seed=seed)
    assert await converged(c, within=10.0) <= 10.0
    await c.run_for(20)
    views = c.views()
    assert len(views) == len(c.nodes)
    assert all([(v.node_id, v.status) for v in view] == [(x, Status.ALIVE) for x in c.nodes]
               for view in views.values())
    assert c.dead_verdicts() == []
    # Steady-state traffic stays small (target: <= 2 KB/s per member).
    per_member = max(c.net.stats.bytes_by_sender.values()) / c.now
    assert per_member < 2048


async def _crash_detection_time(seed: int) -> tuple[SimCluster, str, float]:
    c = SimCluster(4 + seed % 7, seed=seed)
    await converged(c)
    await c.run_for(3)
    victim = random.Random(seed).choice(list(c.nodes))
    c.crash(victim)
    took = await c.run_until_true(lambda: c.all_see([victim], Status.DEAD), within=30, step=0.1,
                                  what=f"everyone sees {victim} dead")
    return c, victim, took


@pytest.mark.parametrize("seed", range(60))
async def test_crash_is_detected_by_everyone(seed: int, autojump_clock: Clock) -> None:
    c, victim, took = await _crash_detection_time(seed)
    # Worst case: one accuser and slow confirmations keep the Lifeguard timeout
    # near its maximum for a while; see the median test for the typical case.
    assert took <= 20.0, (seed, took)
    others = [x for x in c.nodes if x != victim]
    assert c.all_see(others, Status.ALIVE, observers=others)
    assert {e.node for e in c.dead_verdicts()} == {victim}


async def test_crash_detection_median_is_within_memberlist_anchor(autojump_clock: Clock
                                                                  ) -> None:
    times = sorted([(await _crash_detection_time(seed))[2] for seed in range(100, 121)])
    # memberlist: ~9-10 s crash -> dead everywhere at N = 50-100.
    assert times[len(times) // 2] <= 10.0, times


@pytest.mark.parametrize("seed", range(30))
async def test_partition_heals_into_one_cluster(seed: int, autojump_clock: Clock) -> None:
    n = 4 + seed % 7
    c = SimCluster(n, seed=seed)
    await converged(c)
    ids = list(c.nodes)
    left, right = ids[: n // 2], ids[n // 2:]
    c.partition(left, right)
    await c.run_for(60)
    assert c.all_see(right, Status.DEAD, observers=left)
    assert c.all_see(left, Status.DEAD, observers=right)
    c.heal()
    await c.run_until_true(c.converged_alive, within=35, step=0.5,
                           what="the halves re-merged into one cluster")


@pytest.mark.parametrize("seed", range(5))
async def test_joiners_retry_a_seed_that_is_not_reachable_yet(seed: int, autojump_clock: Clock
                                                              ) -> None:
    c = SimCluster(5, seed=seed, join=False)
    others = [x for x in c.nodes if x != "n00"]
    c.partition(["n00"], others)  # the seed is not listening yet
    for x in others:
        c.join(x)
    await c.run_for(10)
    assert all(len(c.nodes[x].member.members()) == 1 for x in c.nodes)
    c.heal()
    took = await c.run_until_true(c.converged_alive, within=10)
    assert took <= 5.0


@pytest.mark.parametrize("seed", range(10))
async def test_one_way_partition_heals(seed: int, autojump_clock: Clock) -> None:
    c = SimCluster(6, seed=seed)
    await converged(c)
    c.partition(["n00", "n01"], ["n02", "n03", "n04", "n05"], one_way=True)
    await c.run_for(30)
    c.heal()
    await c.run_until_true(c.converged_alive, within=35, step=0.5)


@pytest.mark.parametrize("seed", [1, 2])
async def test_ten_percent_loss_for_ten_minutes_gives_no_false_dead(
        seed: int, autojump_clock: Clock) -> None:
    c = SimCluster(8, seed=seed, link=LinkProfile(loss=0.10))
    await converged(c, within=30)
    await c.run_for(600)
    assert c.dead_verdicts() == []
    suspicions = sum(n.member.stats().suspicions_started for n in c.nodes.values())
    probes = sum(n.member.stats().probes for n in c.nodes.values())
    # Analytic anchor ~0.77% of probes at 10% loss with 3 indirect probes.
    assert 0 < suspicions < 0.03 * probes


@pytest.mark.parametrize("seed", range(5))
async def test_duplicating_reordering_links_are_harmless(seed: int, autojump_clock: Clock
                                                        ) -> None:
    link = LinkProfile(latency=0.01, jitter=0.02, duplicate=0.2, reorder=0.2, reorder_delay=0.2)
    c = SimCluster(6, seed=seed, link=link)
    await converged(c)
    await c.run_for(120)
    assert c.converged_alive() and c.dead_verdicts() == []


@pytest.mark.parametrize("seed", range(10))
async def test_paused_node_is_declared_dead_then_comes_back(seed: int, autojump_clock: Clock
                                                           ) -> None:
    c = SimCluster(5, seed=seed)
    await converged(c)
    c.pause("n02")  # SIGSTOP
    await c.run_until_true(lambda: c.all_see(["n02"], Status.DEAD,
                                             observers=["n00", "n01", "n03", "n04"]),
                           within=30, what="the others see paused n02 dead")
    c.resume("n02")  # SIGCONT
    await converged(c, within=10)
    assert c.nodes["n02"].member.incarnation >= 1
    assert all(c.nodes[o].member.member("n02").incarnation >= 1  # type: ignore[union-attr]
               for o in c.nodes)


@pytest.mark.parametrize("seed", range(10))
async def test_restarted_node_rejoins_from_a_new_address(seed: int, autojump_clock: Clock
                                                        ) -> None:
    c = SimCluster(5, seed=seed)
    await converged(c)
    c.crash("n03")
    await c.run_until_true(lambda: c.all_see(["n03"], Status.DEAD), within=30,
                           what="everyone sees crashed n03 dead")
    c.restart("n03", address="10.9.9.9:7000")
    await converged(c, within=15)
    for o in c.nodes:
        view = c.nodes[o].member.member("n03")
        assert view is not None and view.address == "10.9.9.9:7000" and view.incarnation >= 1


@pytest.mark.parametrize("seed", range(5))
async def test_restart_at_same_address_before_detection(seed: int, autojump_clock: Clock
                                                       ) -> None:
    c = SimCluster(5, seed=seed)
    await converged(c)
    c.crash("n01")
    c.restart("n01")  # back at once, same address, fresh state at incarnation 0
    await converged(c, within=15)
    await c.run_for(30)
    assert c.converged_alive() and c.dead_verdicts() == []


@pytest.mark.parametrize("seed", range(5))
async def test_restart_after_suspicion_outnumbers_its_old_life(seed: int, autojump_clock: Clock
                                                              ) -> None:
    c = SimCluster(5, seed=seed)
    await converged(c)
    c.pause("n01")
    await c.run_until_true(lambda: any(c.status(o, "n01") is Status.SUSPECT for o in c.nodes
                                       if o != "n01"), within=10, step=0.1,
                           what="someone suspects paused n01")
    c.crash("n01")
    c.restart("n01")
    await converged(c, within=15)
    assert c.nodes["n01"].member.incarnation >= 1


@pytest.mark.parametrize("seed", range(10))
async def test_graceful_leave_is_left_not_dead(seed: int, autojump_clock: Clock) -> None:
    c = SimCluster(6, seed=seed)
    await converged(c)
    c.leave("n04")
    await c.run_for(2)
    c.crash("n04")  # the process exits after announcing
    await c.run_for(30)
    assert c.all_see(["n04"], Status.LEFT)
    assert c.dead_verdicts() == []
    assert [e for e in c.trace if e.node == "n04" and e.status is Status.SUSPECT] == []


async def _slow_members_run(config: SwimConfig, seed: int) -> tuple[int, int]:
    c = SimCluster(10, seed=seed, config=config)
    await converged(c)
    slow = ["n03", "n07"]
    for s in slow:
        c.set_slow(s, 1.0, 2.0)  # handles every message 1-2 s late
    await c.run_for(60)
    healthy = {x for x in c.nodes if x not in slow}
    false_dead = sum(1 for e in c.dead_verdicts() if e.node in healthy)
    suspects = sum(1 for e in c.trace if e.status is Status.SUSPECT and e.node in healthy)
    return false_dead, suspects


async def test_lifeguard_keeps_slow_members_from_accusing_healthy_ones(
        autojump_clock: Clock) -> None:
    base = SwimConfig(cluster="sim")
    lg_dead, lg_suspects = await _slow_members_run(base, seed=5)
    plain_dead, plain_suspects = await _slow_members_run(base.plain_swim(), seed=5)
    assert lg_dead == 0 and lg_dead <= plain_dead
    assert plain_suspects > 10 * max(1, lg_suspects), (lg_suspects, plain_suspects)


async def _chaos(seed: int) -> SimCluster:
    """A mixed fault schedule drawn from the seed; ends with all faults healed."""
    rng = random.Random(seed)
    link = LinkProfile(latency=0.005, jitter=0.01, loss=rng.choice([0.0, 0.02, 0.05]),
                       duplicate=0.02, reorder=0.05)
    c = SimCluster(rng.randint(4, 8), seed=seed, link=link)
    await c.run_for(5)
    ids = list(c.nodes)
    crashed: list[str] = []
    for _ in range(3):
        fault = rng.choice(["partition", "pause", "crash", "slow", "none"])
        victim = rng.choice(ids[1:])
        if fault == "partition":
            cut = rng.randint(1, len(ids) - 1)
            c.partition(ids[:cut], ids[cut:], one_way=rng.random() < 0.3)
        elif fault == "pause":
            c.pause(victim)
        elif fault == "crash" and victim not in crashed:
            c.crash(victim)
            crashed.append(victim)
        elif fault == "slow":
            c.set_slow(victim, 0.5, 1.5)
        await c.run_for(rng.uniform(5, 20))
    c.heal()
    for x in ids:
        c.resume(x)
        c.clear_slow(x)
    for x in crashed:
        c.restart(x)
    return c


@pytest.mark.parametrize("seed", range(60))
async def test_chaos_then_heal_converges(seed: int, autojump_clock: Clock) -> None:
    c = await _chaos(seed)
    await c.run_until_true(c.converged_alive, within=45, step=0.5,
                           what="convergence after every fault healed")


async def test_same_seed_replays_the_identical_trace(autojump_clock: Clock) -> None:
    async def run(seed: int) -> tuple[list[object], object]:
        c = await _chaos(seed)
        await c.run_for(30)
        stats = [n.member.stats() for n in c.nodes.values()]
        return list(c.trace), (stats, c.net.stats)

    first = await run(7)
    assert len(first[0]) > 50
    assert first == await run(7)
    assert first != await run(8)


async def test_run_until_true_raises_naming_what_it_waited_for(autojump_clock: Clock) -> None:
    c = SimCluster(3, seed=0)
    with pytest.raises(SimTimeout, match=r"n09 appears still false after 2 s .*\(seed 0\)"
                       ) as caught:
        await c.run_until_true(lambda: "n09" in c.nodes, within=2.0, step=0.5,
                               what="n09 appears")
    assert (caught.value.what, caught.value.waited, caught.value.seed) == ("n09 appears", 2.0, 0)
    with pytest.raises(SimTimeout, match=r"<lambda> still false"):
        await c.run_until_true(lambda: False, within=0.5)
    assert await c.run_until_true(c.converged_alive, within=10.0) <= 10.0


@pytest.mark.parametrize("incarnation", [fr.MAX_UINT, fr.MAX_INCARNATION,
                                         fr.MAX_INCARNATION - 1])
async def test_dead_at_the_incarnation_bound_cannot_cut_a_live_node_out(
        incarnation: int, autojump_clock: Clock) -> None:
    """The issue's attack: one gossip packet declaring a live node dead at the
    highest incarnation. Beyond the bound it is dropped and counted; just
    below it the node refutes (its refutation stays in bounds) and stays."""
    c = SimCluster(5, seed=3)
    await converged(c)
    victim = "n02"
    forged = fr.Gossip("evil", (fr.Dead(victim, c.address_for(2), incarnation, "evil"),))
    for i in range(5):
        c.net.send("6.6.6.6:1", c.address_for(i), fr.encode(forged, cluster="sim"))
    await c.run_for(10)
    assert c.converged_alive()
    refused = sum(n.member.stats().incarnations_refused for n in c.nodes.values())
    if incarnation >= fr.MAX_INCARNATION:
        assert refused == 5 and c.nodes[victim].member.incarnation == 0
        assert c.dead_verdicts(victim) == []
    else:  # accepted for a moment, then refuted
        assert refused == 0
        assert c.nodes[victim].member.incarnation == fr.MAX_INCARNATION
        views = [c.nodes[o].member.member(victim) for o in c.nodes]
        assert all(v is not None and v.incarnation == fr.MAX_INCARNATION for v in views)
