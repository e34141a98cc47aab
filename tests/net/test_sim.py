"""Tests for rimio.net.sim.SimNetwork: the packet-level fault model."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from rimio.net.sim import LinkProfile, SimNetwork

Log = list[tuple[float, str, str, bytes]]


def net_with_log(seed: int, link: LinkProfile, *addrs: str) -> tuple[SimNetwork, Log]:
    net = SimNetwork(random.Random(seed), link, start=trio.current_time())
    log: Log = []
    for a in addrs:
        net.register(a, lambda t, src, data, a=a: log.append((t, src, a, data)))
    return net, log


async def test_latency_advances_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    net, log = net_with_log(1, LinkProfile(latency=0.05, jitter=0.01), "a", "b")
    t0 = trio.current_time()
    net.send("a", "b", b"hi")
    await net.run_until(t0 + 1.0)
    ((t, src, dst, data),) = log
    assert (src, dst, data) == ("a", "b", b"hi")
    assert 0.05 <= t - t0 <= 0.06
    assert trio.current_time() == pytest.approx(t0 + 1.0)


async def test_fifo_without_jitter_and_reordering_with_it(
        autojump_clock: trio.testing.MockClock) -> None:
    net, log = net_with_log(1, LinkProfile(latency=0.01, jitter=0.0), "a", "b")
    for i in range(50):
        net.send("a", "b", bytes([i]))
    await net.run_until(net.now + 1)
    assert [d[3][0] for d in log] == list(range(50))

    net, log = net_with_log(1, LinkProfile(latency=0.01, jitter=0.0, reorder=0.3), "a", "b")
    for i in range(50):
        net.send("a", "b", bytes([i]))
    await net.run_until(net.now + 1)
    order = [d[3][0] for d in log]
    assert sorted(order) == list(range(50)) and order != list(range(50))


async def test_loss_and_duplication_rates(autojump_clock: trio.testing.MockClock) -> None:
    net, log = net_with_log(3, LinkProfile(loss=0.1, duplicate=0.05), "a", "b")
    for _ in range(4000):
        net.send("a", "b", b"x")
    await net.run_until(net.now + 1)
    assert 300 < net.stats.lost < 500
    assert 120 < net.stats.duplicated < 240
    assert len(log) == 4000 - net.stats.lost + net.stats.duplicated


async def test_partitions_one_way_two_way_and_heal(
        autojump_clock: trio.testing.MockClock) -> None:
    net, log = net_with_log(1, LinkProfile(), "a", "b", "c")
    net.partition(["a"], ["b"], one_way=True)
    for src, dst in [("a", "b"), ("b", "a"), ("a", "c")]:
        net.send(src, dst, b"1")
    await net.run_until(net.now + 1)
    assert sorted((s, d) for _, s, d, _ in log) == [("a", "c"), ("b", "a")]
    log.clear()
    net.partition(["c"], ["a", "b"])
    for src, dst in [("c", "a"), ("b", "c"), ("a", "b")]:
        net.send(src, dst, b"2")
    await net.run_until(net.now + 1)
    assert log == [] and net.stats.partitioned == 4
    net.heal()
    net.send("a", "b", b"3")
    await net.run_until(net.now + 1)
    assert [(s, d) for _, s, d, _ in log] == [("a", "b")]


async def test_unregistered_destination_is_counted(
        autojump_clock: trio.testing.MockClock) -> None:
    net, log = net_with_log(1, LinkProfile(), "a")
    net.send("a", "gone", b"x")
    await net.run_until(net.now + 1)
    assert log == [] and net.stats.unreachable == 1


async def test_per_link_profile_overrides_default(
        autojump_clock: trio.testing.MockClock) -> None:
    net, log = net_with_log(1, LinkProfile(latency=0.001, jitter=0.0), "a", "b")
    net.set_link("a", "b", LinkProfile(latency=0.5, jitter=0.0))
    t0 = net.now
    net.send("a", "b", b"slow")
    net.send("b", "a", b"fast")
    await net.run_until(t0 + 1)
    assert [(round(t - t0, 6), d) for t, _, _, d in log] == [(0.001, b"fast"), (0.5, b"slow")]


async def test_events_at_equal_times_run_in_insertion_order(
        autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(random.Random(0), start=trio.current_time())
    seen: list[int] = []
    for i in range(20):
        net.schedule(net.now + 1.0, lambda t, i=i: seen.append(i))
    await net.run_until(net.now + 2)
    assert seen == list(range(20))


async def _replay(seed: int) -> Log:
    link = LinkProfile(latency=0.01, jitter=0.02, loss=0.2, duplicate=0.1, reorder=0.2)
    net, log = net_with_log(seed, link, "a", "b", "c")
    rng = random.Random(seed)
    for i in range(300):
        src, dst = rng.sample(["a", "b", "c"], 2)
        net.send(src, dst, i.to_bytes(2, "big"))
        if i % 50 == 0:
            await net.run_until(net.now + 0.005)
    await net.run_until(net.now + 1)
    t0 = log[0][0]
    return [(round(t - t0, 9), s, d, b) for t, s, d, b in log]


async def test_same_seed_same_deliveries(autojump_clock: trio.testing.MockClock) -> None:
    first = await _replay(42)
    assert first == await _replay(42)
    assert first != await _replay(43)


def test_runs_under_an_explicit_mock_clock_from_sync_code() -> None:
    async def main() -> float:
        net, log = net_with_log(1, LinkProfile(latency=3600.0, jitter=0.0), "a", "b")
        net.send("a", "b", b"late")
        await net.run_until(net.now + 7200)
        return log[0][0]

    # An hour of simulated latency, in no wall time.
    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == 3600.0
