# ruff: noqa: RUF001  (the Markdown report uses typographic signs on purpose)
"""Membership benchmark: SWIM + Lifeguard in the deterministic simulator.

Run it as::

    python benchmarks/membership/run.py [--quick] [--out benchmarks/membership/results.md]
                                        [--json PATH] [--workers 2]

Every scenario is one seeded `rimio.testing.simcluster.SimCluster` in its own ``trio.run``
under ``trio.testing.MockClock(autojump_threshold=0)``, with the `SwimConfig`
defaults (hashicorp/memberlist's LAN profile: probe 1 s, timeout 500 ms, 3
indirect probes, suspicion mult 4, max-timeout mult 6, retransmit mult 4,
gossip every 200 ms to 3 members, push-pull every 30 s, awareness max 8).
Scenarios run in a small process pool (one scenario per ``trio.run``); each
is deterministic from its seed, so the figures do not depend on the pool.

Measured (issue 3, item 7):

(a) crash of one member -> first suspicion, first dead verdict, dead at every member;
(b) false suspicions per probe and false dead verdicts at 10% independent loss;
(c) C of 100 members slowed (frames handled 1-2 s late, or the loop stalls),
    full Lifeguard against plain SWIM: false dead verdicts, crash detection;
(d) gossip rounds until one update reaches every member, and updates that
    miss someone until push-pull;
(e) bytes sent per member per second, probe/gossip packets and push-pull apart;
(f) re-merge time of the two halves of a 50/50 partition held 60 s.

Figures are reported as measured, with PASS/MISS against the targets; the exit
status is 0 unless the benchmark itself fails. The benchmark only observes the
simulator: it subclasses `SimCluster` to classify the bytes each member sends
(the simulator counts bytes per sender only) and to tell first-hand dead
verdicts (a member's own suspicion timer ran out) from ones learnt by gossip.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing

from rimio.core import frames as fr
from rimio.core.frames import Status
from rimio.core.swim import MemberChanged, Send, SwimConfig
from rimio.core.swim.dissemination import retransmit_limit
from rimio.core.swim.suspicion import suspicion_bounds
from rimio.testing.simcluster import LinkProfile, SimCluster, SimNode, SimTimeout

ROOT = Path(__file__).resolve().parents[2]
# Frame-handling delays of the "late" slow-member models, in seconds. "late" is
# the definition; "late-heavy" is an extra, harsher model, added
# because the one makes plain SWIM produce no false verdict either.
SLOW_DELAYS = {"late": (1.0, 2.0), "late-heavy": (4.0, 8.0)}
CONFIG = SwimConfig.memberlist_lan(cluster="sim")  # memberlist's LAN profile exactly
RIMIO = SwimConfig(cluster="sim")  # Rimio's defaults (retransmit_mult 6)
PLAIN = CONFIG.plain_swim()
LOSS = 0.10

PROBE_TYPES = frozenset({"ping", "ack", "ping-req", "nack"})
PUSH_PULL_TYPES = frozenset({"push-pull-req", "push-pull-resp"})


def analytic_false_suspicion(loss: float, k: int) -> float:
    """P(probe of a healthy member fails) with independent loss `loss`:
    the direct ping or its ack is lost, and each of the k indirect paths
    (ping-req, ping, ack, forwarded ack) loses at least one of its 4 packets."""
    direct = 1 - (1 - loss) ** 2
    indirect = 1 - (1 - loss) ** 4
    return direct * indirect**k


# --------------------------------------------------------------------------
# Instrumented cluster


@dataclass(slots=True)
class Watch:
    """Who has learnt `node` at incarnation >= `incarnation`, and when."""

    node: str
    incarnation: int
    start: float
    seen: dict[str, float] = field(default_factory=dict)


class BenchCluster(SimCluster):
    """`SimCluster` that classifies sent bytes and first-hand dead verdicts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.bytes_by_kind: Counter[str] = Counter()
        self.packets_by_kind: Counter[str] = Counter()
        self.declarations: list[tuple[float, str, str]] = []  # (t, observer, subject)
        self.dead_events: list[tuple[float, str, str, int]] = []  # (t, obs, subject, inc)
        self.suspect_events: list[tuple[float, str, str, int]] = []
        self.watch: Watch | None = None
        self._declared_seen: dict[str, tuple[int, int]] = {}
        super().__init__(*args, **kwargs)

    def _sent(self, node: SimNode, action: Send, size: int) -> None:
        t = action.frame.TYPE
        kind = ("push-pull" if action.stream or t in PUSH_PULL_TYPES
                else "probe" if t in PROBE_TYPES
                else "gossip" if t == "gossip" else "other")
        self.bytes_by_kind[kind] += size
        self.packets_by_kind[kind] += 1
        super()._sent(node, action, size)

    def _changed(self, node: SimNode, change: MemberChanged) -> None:
        self._observe(node, change)
        super()._changed(node, change)

    def _observe(self, node: SimNode, a: MemberChanged) -> None:
        t = self.now
        w = self.watch
        if (w is not None and a.node_id == w.node and a.incarnation >= w.incarnation
                and node.node_id not in w.seen):
            w.seen[node.node_id] = t
        if a.node_id == node.node_id:
            return
        if a.status is Status.SUSPECT:
            self.suspect_events.append((t, node.node_id, a.node_id, a.incarnation))
        elif a.status is Status.DEAD:
            self.dead_events.append((t, node.node_id, a.node_id, a.incarnation))
            # First-hand iff this member's own dead_declared counter moved.
            ident, seen = self._declared_seen.get(node.node_id, (0, 0))
            declared = node.member.stats().dead_declared
            if ident != id(node.member):
                seen = 0
            if declared > seen:
                self.declarations.append((t, node.node_id, a.node_id))
            self._declared_seen[node.node_id] = (id(node.member), declared)

    def bump_incarnation(self, node_id: str) -> int:
        """Make `node_id` announce itself at a higher incarnation (one fresh
        update to disseminate); returns the new incarnation."""
        node = self.nodes[node_id]
        m = node.member
        claim = fr.Alive(node_id, node.address, m.incarnation + 1)
        self.apply(node_id, m.handle_frame(self.net.current_time(), node.address, claim))
        return m.incarnation

    def totals(self) -> Counter[str]:
        """Probe, suspicion, refutation and nack counters summed over all members."""
        out: Counter[str] = Counter()
        for n in self.nodes.values():
            st = n.member.stats()
            out.update(probes=st.probes, suspicions=st.suspicions_started,
                       refutations=st.refutations, nacks=st.nacks_received,
                       missing_nacks=st.missing_nacks)
        return out


async def _converge(c: SimCluster, within: float = 120.0) -> float:
    # A cluster that never converges raises SimTimeout, naming the seed.
    return await c.run_until_true(c.converged_alive, within=within, step=0.25)


def _run_trio(fn: Callable[..., Any], *args: Any) -> Any:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


# --------------------------------------------------------------------------
# Scenarios (each returns a plain dict; run in a worker process)


async def _crash(n: int, seed: int) -> dict[str, Any]:
    c = BenchCluster(n, seed=seed, config=CONFIG)
    await _converge(c)
    rng = random.Random(seed)
    await c.run_for(5.0 + rng.uniform(0.0, CONFIG.probe_interval))
    victim = rng.choice(sorted(c.nodes))
    c.crash(victim)
    t0 = c.now
    # A measurement, not a check: if not everyone sees it dead, "all_dead" is None.
    with contextlib.suppress(SimTimeout):
        await c.run_until_true(lambda: c.all_see([victim], Status.DEAD), within=120.0, step=0.1)
    sus = [t for t, _, s, _ in c.suspect_events if s == victim and t >= t0]
    dead: dict[str, float] = {}
    for t, obs, s, _ in c.dead_events:
        if s == victim and t >= t0:
            dead.setdefault(obs, t)
    running = [x.node_id for x in c.running()]
    everywhere = (max(dead[o] for o in running) - t0
                  if all(o in dead for o in running) else None)
    return {
        "first_suspect": min(sus) - t0 if sus else None,
        "first_dead": min(dead.values()) - t0 if dead else None,
        "all_dead": everywhere,
        "declarers": sum(1 for _, _, s in c.declarations if s == victim),
        "other_dead": sum(1 for _, _, s, _ in c.dead_events if s != victim),
    }


async def _loss(n: int, seed: int, duration: float, rimio_defaults: bool = False
                ) -> dict[str, Any]:
    cfg = RIMIO if rimio_defaults else CONFIG
    c = BenchCluster(n, seed=seed, config=cfg, link=LinkProfile(loss=LOSS))
    await _converge(c)
    await c.run_for(10.0)
    k_before = c.totals()
    d0, e0 = len(c.declarations), len(c.dead_events)
    b0, k0 = c.net.stats.bytes_sent, c.packets_by_kind.total()
    t0 = c.now
    chunk = 300.0
    suspects = 0
    for _ in range(math.ceil(duration / chunk)):
        await c.run_for(min(chunk, duration - (c.now - t0)))
        suspects += len(c.suspect_events)
        c.suspect_events.clear()  # bound memory: only the count is needed
        c.trace.clear()
    k = c.totals()
    k.subtract(k_before)
    decl = c.declarations[d0:]
    dead_eps = {(s, i) for _, _, s, i in c.dead_events[e0:]}
    return {
        "seconds": c.now - t0,
        "probes": k["probes"],
        "suspicions": k["suspicions"],
        "refutations": k["refutations"],
        "nacks": k["nacks"],
        "missing_nacks": k["missing_nacks"],
        "false_dead_declarations": len(decl),
        "false_dead_episodes": len(dead_eps),
        "members_seen_dead": len({s for s, _ in dead_eps}),
        "bytes_per_member_s": (c.net.stats.bytes_sent - b0) / n / (c.now - t0),
        "packets_per_member_s": (c.packets_by_kind.total() - k0) / n / (c.now - t0),
        "suspect_views": suspects,
    }


async def _slow(n: int, count: int, mode: str, lifeguard: bool, seed: int,
                duration: float, crash_after: float) -> dict[str, Any]:
    cfg = CONFIG if lifeguard else PLAIN
    c = BenchCluster(n, seed=seed, config=cfg)
    await _converge(c)
    await c.run_for(10.0)
    rng = random.Random(seed * 7919 + count)
    ids = sorted(c.nodes)
    victim = rng.choice(ids)
    slowed = rng.sample([x for x in ids if x != victim], count)
    healthy = [x for x in ids if x not in slowed]
    start = c.now
    end_abs = c.net.current_time() + duration
    if mode in SLOW_DELAYS:
        lo, hi = SLOW_DELAYS[mode]
        for x in slowed:
            c.set_slow(x, lo, hi)
    else:
        _schedule_stalls(c, slowed, rng, end_abs)
    d0, e0, s0 = len(c.declarations), len(c.dead_events), len(c.suspect_events)
    await c.run_for(crash_after)
    c.crash(victim)
    t_crash = c.now
    alive_healthy = [x for x in healthy if x != victim]
    took_first: float | None = None
    took_healthy: float | None = None
    took_all: float | None = None
    limit = duration - crash_after
    while c.now - t_crash < limit:
        await c.run_for(0.1)
        after = [t for t, _, s in c.declarations if s == victim and t >= t_crash]
        if took_first is None and after:
            # (a verdict about it before the crash is a false one, counted apart)
            took_first = min(after) - t_crash
        if took_healthy is None and c.all_see([victim], Status.DEAD, observers=alive_healthy):
            took_healthy = c.now - t_crash
        if took_all is None and c.all_see([victim], Status.DEAD):
            took_all = c.now - t_crash
        if took_healthy is not None and took_all is not None:
            break
    rest = start + duration - c.now
    if rest > 0:
        await c.run_for(rest)
    for x in slowed:
        c.clear_slow(x)
    slow_set = set(slowed)
    decl = [(t, o, s) for t, o, s in c.declarations[d0:] if s != victim]
    eps = {(s, i) for _, _, s, i in c.dead_events[e0:] if s != victim}
    sus_eps = {(s, i) for _, _, s, i in c.suspect_events[s0:] if s != victim}
    return {
        "false_dead_healthy": sum(1 for _, _, s in decl if s not in slow_set),
        "false_dead_slowed": sum(1 for _, _, s in decl if s in slow_set),
        "episodes_healthy": sum(1 for s, _ in eps if s not in slow_set),
        "episodes_slowed": sum(1 for s, _ in eps if s in slow_set),
        "suspect_episodes": len(sus_eps),
        "crash_first_dead": took_first,
        "crash_dead_healthy": took_healthy,
        "crash_dead_all": took_all,
    }


def _schedule_stalls(c: SimCluster, slowed: Sequence[str], rng: random.Random,
                     end_abs: float) -> None:
    """Each slowed member's loop stalls for 1-2 s, runs for 1-3 s, repeatedly."""

    def stall(x: str, at: float) -> None:
        if at >= end_abs or c.nodes[x].crashed:
            return
        c.pause(x)
        back = min(end_abs, at + rng.uniform(1.0, 2.0))
        c.net.schedule(back, lambda t: wake(x, t))

    def wake(x: str, at: float) -> None:
        c.resume(x)
        nxt = at + rng.uniform(1.0, 3.0)
        if nxt < end_abs:
            c.net.schedule(nxt, lambda t: stall(x, t))

    for x in slowed:
        first = c.net.current_time() + rng.uniform(0.0, 2.0)
        c.net.schedule(first, lambda t, x=x: stall(x, t))


async def _spread(n: int, seed: int, updates: int, loss: float) -> dict[str, Any]:
    link = LinkProfile(loss=loss)
    c = BenchCluster(n, seed=seed, config=CONFIG, link=link)
    await _converge(c)
    await c.run_for(10.0)
    rng = random.Random(seed + 17)
    gi = CONFIG.gossip_interval
    samples: list[dict[str, Any]] = []
    for _ in range(updates):
        await c.run_for(rng.uniform(0.0, 1.0))
        src = rng.choice(sorted(c.nodes))
        inc = c.nodes[src].member.incarnation + 1
        c.watch = Watch(src, inc, c.now)
        new_inc = c.bump_incarnation(src)
        c.watch = Watch(src, new_inc, c.now)
        w = c.watch
        others = [x for x in c.nodes if x != src]
        gossip_done: float | None = None
        missed = False
        short = 0
        # Bounded: the update reaches everyone, or 300 s pass (3 push-pull rounds).
        while c.now - w.start < 300.0:
            await c.run_for(gi)
            if all(o in w.seen for o in others):
                break
            if gossip_done is None and not any(_pending(c, o, src, new_inc) for o in c.nodes):
                gossip_done = c.now - w.start
                missed = True
                short = sum(1 for o in others if o not in w.seen)
        covered = all(o in w.seen for o in others)
        full = max(w.seen[o] for o in others) - w.start if covered else None
        samples.append({"full": full, "missed": missed, "gossip_done": gossip_done,
                        "missing_at_gossip_end": short})
        c.watch = None
        await c.run_for(4.0)
    return {"samples": samples}


def _pending(c: SimCluster, node_id: str, subject: str, inc: int) -> bool:
    return any(u.node == subject and u.incarnation >= inc
               for u in c.nodes[node_id].member.pending_updates())


async def _traffic(n: int, seed: int, duration: float) -> dict[str, Any]:
    c = BenchCluster(n, seed=seed, config=CONFIG)
    await _converge(c)
    await c.run_for(30.0)
    b0, k0 = Counter(c.bytes_by_kind), Counter(c.packets_by_kind)
    s0 = Counter(c.net.stats.bytes_by_sender)
    t0 = c.now
    await c.run_for(duration)
    span = c.now - t0
    b = {k: (c.bytes_by_kind[k] - b0[k]) / n / span for k in ("probe", "gossip", "push-pull",
                                                              "other")}
    p = {k: (c.packets_by_kind[k] - k0[k]) / n / span for k in ("probe", "gossip",
                                                                "push-pull", "other")}
    per_sender = [(v - s0[a]) / span for a, v in c.net.stats.bytes_by_sender.items()]
    return {"bytes": b, "packets": p, "max_member": max(per_sender),
            "dead": len(c.dead_events)}


async def _partition(n: int, seed: int, hold: float) -> dict[str, Any]:
    c = BenchCluster(n, seed=seed, config=CONFIG)
    await _converge(c)
    await c.run_for(5.0 + random.Random(seed).uniform(0.0, 5.0))
    ids = sorted(c.nodes)
    left, right = ids[: n // 2], ids[n // 2:]
    c.partition(left, right)
    await c.run_for(hold)
    split = (c.all_see(right, Status.DEAD, observers=left)
             and c.all_see(left, Status.DEAD, observers=right))
    c.heal()
    took: float | None
    try:
        took = await c.run_until_true(c.converged_alive, within=180.0, step=0.25)
    except SimTimeout:
        took = None  # reported as "did not re-merge"
    return {"split": split, "remerge": took}


SCENARIOS: dict[str, Callable[..., Any]] = {
    "crash": _crash, "loss": _loss, "slow": _slow, "spread": _spread,
    "traffic": _traffic, "partition": _partition,
}


def run_task(task: tuple[str, tuple[Any, ...]]) -> tuple[str, tuple[Any, ...], Any, float]:
    name, args = task
    began = time.perf_counter()
    out = _run_trio(SCENARIOS[name], *args)
    return name, args, out, time.perf_counter() - began


# --------------------------------------------------------------------------
# Plan


@dataclass(frozen=True, slots=True)
class Plan:
    crash_seeds: dict[int, int]
    loss: dict[int, tuple[int, float]]  # n -> (seeds, seconds)
    slow_counts: tuple[int, ...]
    slow_seeds: dict[str, int]  # mode -> seeds
    slow_duration: float
    slow_crash_after: float
    spread: dict[int, tuple[int, int]]  # n -> (seeds, updates per seed)
    spread_loss_seeds: int
    traffic: tuple[int, float]  # seeds, seconds
    partition: dict[int, int]


FULL = Plan(
    crash_seeds={10: 20, 50: 15, 100: 12},
    loss={10: (3, 3600.0), 50: (2, 3600.0), 100: (2, 1200.0)},
    slow_counts=(1, 2, 4, 8, 16),
    slow_seeds={"late": 2, "stall": 1, "late-heavy": 1},
    slow_duration=120.0,
    slow_crash_after=30.0,
    spread={10: (3, 40), 50: (3, 40), 100: (3, 40)},
    spread_loss_seeds=2,
    traffic=(3, 600.0),
    partition={10: 10, 50: 6},
)

QUICK = Plan(
    crash_seeds={10: 5, 50: 4, 100: 3},
    loss={10: (1, 600.0), 50: (1, 300.0)},
    slow_counts=(1, 4, 16),
    slow_seeds={"late": 1},
    slow_duration=120.0,
    slow_crash_after=30.0,
    spread={10: (1, 15), 50: (1, 15), 100: (1, 15)},
    spread_loss_seeds=0,
    traffic=(1, 200.0),
    partition={10: 2, 50: 1},
)

NS = (10, 50, 100)


def tasks_for(plan: Plan) -> list[tuple[str, tuple[Any, ...]]]:
    tasks: list[tuple[str, tuple[Any, ...]]] = []
    for n, (seeds, secs) in plan.loss.items():
        tasks += [("loss", (n, 2000 + s, secs)) for s in range(seeds)]
    # the same N = 50 runs with Rimio's defaults (retransmit_mult 6 instead of 4)
    for n, (seeds, secs) in plan.loss.items():
        tasks += [("loss", (n, 2000 + s, secs, True)) for s in range(seeds)]
    for mode, seeds in plan.slow_seeds.items():
        for count in plan.slow_counts:
            for lg in (True, False):
                tasks += [("slow", (100, count, mode, lg, 3000 + s, plan.slow_duration,
                                    plan.slow_crash_after)) for s in range(seeds)]
    for n, (seeds, ups) in plan.spread.items():
        tasks += [("spread", (n, 4000 + s, ups, 0.0)) for s in range(seeds)]
        tasks += [("spread", (n, 4100 + s, ups, LOSS)) for s in range(plan.spread_loss_seeds)]
    seeds, secs = plan.traffic
    for n in NS:
        tasks += [("traffic", (n, 5000 + s, secs)) for s in range(seeds)]
    for n, seeds in plan.crash_seeds.items():
        tasks += [("crash", (n, 1000 + s)) for s in range(seeds)]
    for n, seeds in plan.partition.items():
        tasks += [("partition", (n, 6000 + s, 60.0)) for s in range(seeds)]
    return tasks


def _cost(task: tuple[str, tuple[Any, ...]]) -> float:
    """Rough wall-time estimate, to start the longest tasks first."""
    name, args = task
    n = args[0]
    per_s = {10: 0.003, 50: 0.008, 100: 0.025}[n]
    if name == "loss":
        return args[2] * per_s * 3
    if name == "slow":
        return args[5] * per_s * 1.5
    if name == "spread":
        return args[2] * 5.5 * per_s * (3 if args[3] else 1)
    if name == "traffic":
        return args[2] * per_s
    if name == "partition":
        return 120 * per_s
    return 60 * per_s


# --------------------------------------------------------------------------
# Statistics and formatting


def pct(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); p99 of few samples ~ max."""
    s = sorted(xs)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def f1(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.1f}{unit}"


def f2(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.2f}{unit}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def _git_rev() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "src/rimio/core", "src/rimio/net"], capture_output=True,
                               text=True, timeout=10, check=False)
        rev = out.stdout.strip() or "unknown"
        return rev + (" (core/net modified)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------
# Report


class Report:
    def __init__(self, plan: Plan, quick: bool, results: list[tuple[str, tuple[Any, ...], Any,
                                                                   float]]) -> None:
        self.plan = plan
        self.quick = quick
        self.results = results
        self.lines: list[str] = []
        self.summary: list[tuple[str, str, str, str]] = []  # (target, figure, anchor, verdict)
        self.wall: Counter[str] = Counter()
        for name, _, _, secs in results:
            self.wall[name] += secs

    def of(self, name: str, pred: Callable[[tuple[Any, ...]], bool] = lambda a: True
           ) -> list[Any]:
        return [out for nm, args, out, _ in self.results if nm == name and pred(args)]

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def section_a(self) -> None:
        self.add("### (a) Crash of one member", "",
                 "A random member crashes (stops answering) a few seconds after the cluster "
                 "converged, at a random phase of the probe timers. Times in seconds after "
                 "the crash: first suspicion anywhere, first dead verdict anywhere, and the "
                 "moment the last running member holds it dead. Suspicion timeout at N "
                 "(Lifeguard, from `suspicion.py`): min `4·max(1, log10 N)` s, max 6× min, "
                 "shrinking to min after 2 independent confirmations.", "",
                 "| N | runs | → first suspicion p50 / p99 (periods) | → first dead p50 / p99 "
                 "| → dead everywhere p50 / p99 | suspicion timeout min–max | first-hand "
                 "declarers (median) | anchor | target |",
                 "|---:|---:|---|---|---|---|---:|---|---|")
        for n in NS:
            rs = self.of("crash", lambda a, n=n: a[0] == n)
            if not rs:
                continue
            fs = [r["first_suspect"] for r in rs if r["first_suspect"] is not None]
            fd = [r["first_dead"] for r in rs if r["first_dead"] is not None]
            ad = [r["all_dead"] for r in rs if r["all_dead"] is not None]
            lo, hi = suspicion_bounds(CONFIG.suspicion_mult, CONFIG.suspicion_max_timeout_mult,
                                      n, CONFIG.probe_interval)
            undetected = len(rs) - len(ad)
            target = "—"
            if n == 100:
                ok = len(ad) == len(rs) and med(ad) <= 10.0
                target = f"≤ 10 s median: {verdict(ok)}"
                self.summary.append(("crash → dead everywhere ≤ 10 s median, N = 100",
                                     f"{f1(med(ad))} s (p99 {f1(pct(ad, 99))} s)",
                                     "memberlist ≈ 9–10 s at N = 50–100", verdict(ok)))
            anchor = "SWIM ≈ 1.58 periods to first detection"
            if n >= 50:
                anchor += "; memberlist ≈ 9–10 s → dead"
            extra = f" ({undetected} not detected in 120 s)" if undetected else ""
            p = CONFIG.probe_interval
            self.add(f"| {n} | {len(rs)}{extra} | {f2(med(fs))} / {f2(pct(fs, 99))} "
                     f"({f2(med(fs) / p)} / {f2(pct(fs, 99) / p)}) | {f1(med(fd))} / "
                     f"{f1(pct(fd, 99))} | {f1(med(ad))} / {f1(pct(ad, 99))} | "
                     f"{lo:.1f}–{hi:.1f} | {med([r['declarers'] for r in rs]):.0f} | "
                     f"{anchor} | {target} |")
        self.add("", "Phases of crash → dead everywhere (medians, s): detection (crash → "
                 "first suspicion), suspicion timeout (first suspicion → first dead verdict), "
                 "dissemination of the verdict (first dead → dead everywhere).", "",
                 "| N | detection | suspicion timeout | dissemination |",
                 "|---:|---:|---:|---:|")
        for n in NS:
            rs = [r for r in self.of("crash", lambda a, n=n: a[0] == n)
                  if r["all_dead"] is not None and r["first_suspect"] is not None]
            if not rs:
                continue
            d1 = med([r["first_suspect"] for r in rs])
            d2 = med([r["first_dead"] - r["first_suspect"] for r in rs])
            d3 = med([r["all_dead"] - r["first_dead"] for r in rs])
            self.add(f"| {n} | {d1:.2f} | {d2:.2f} | {d3:.2f} |")
        self.add("")

    def section_b(self) -> None:
        k = CONFIG.indirect_checks
        anchor = analytic_false_suspicion(LOSS, k)
        self.add("### (b) 10% independent packet loss", "",
                 f"Every directed link drops each packet with probability {LOSS:.0%} "
                 "(push-pull frames travel reliably, as over a real stream). After "
                 "convergence and 10 s of warm-up, the counters of every member are read "
                 "before and after the run. A *false suspicion* is a probe that ended "
                 "without any ack and made the prober suspect a member (no member "
                 "crashed); *first-hand* dead verdicts are members whose own suspicion "
                 "timer ran out; an *episode* is a (member, incarnation) pair declared "
                 "dead by anyone. Analytic: P = (1 − 0.9²) · (1 − 0.9⁴)³ = "
                 f"{anchor:.3%} (direct ping or ack lost, and each of the {k} indirect "
                 "paths loses one of its 4 packets). *Nacks in time / missing*: nacks "
                 "that reached a prober before its probe period ended, and expected nacks "
                 "that did not (each missing nack raises the prober's health score by 1).",
                 "",
                 "| N | runs × simulated time | probes | false suspicions / probe | "
                 "vs analytic | false dead (first-hand / episodes) | refutations | "
                 "nacks in time / missing | bytes / member / s | target |",
                 "|---:|---|---:|---:|---:|---|---:|---|---:|---|")
        rows = [(n, False) for n in NS] + [(n, True) for n in NS]
        for n, rimio in rows:
            rs = self.of("loss", lambda a, n=n, rimio=rimio: a[0] == n
                         and (len(a) > 3 and a[3]) == rimio)
            if not rs:
                continue
            probes = sum(r["probes"] for r in rs)
            sus = sum(r["suspicions"] for r in rs)
            rate = sus / probes if probes else math.nan
            per_run = [r["suspicions"] / r["probes"] for r in rs if r["probes"]]
            ratio = rate / anchor
            fdd = sum(r["false_dead_declarations"] for r in rs)
            fde = sum(r["false_dead_episodes"] for r in rs)
            ok_rate = abs(ratio - 1) <= 0.30
            secs = rs[0]["seconds"]
            dur = f"{len(rs)} × {secs / 60:.0f} min"
            spread = (f" (runs {min(per_run):.3%}–{max(per_run):.3%})"
                      if len(per_run) > 1 else "")
            label = f"{n} (Rimio defaults: retransmit_mult 6)" if rimio else f"{n}"
            self.add(f"| {label} | {dur} | {probes:,} | {rate:.3%}{spread} | "
                     f"{ratio:.2f}× ({verdict(ok_rate)} ±30%) | {fdd} / {fde} | "
                     f"{sum(r['refutations'] for r in rs):,} | "
                     f"{sum(r['nacks'] for r in rs):,} / {sum(r['missing_nacks'] for r in rs):,} | "
                     f"{med([r['bytes_per_member_s'] for r in rs]):,.0f} | "
                     f"zero false dead: {verdict(fdd == 0)} |")
            if rimio:
                self.summary.append((f"(b) N = {n}, Rimio defaults: zero false dead verdicts",
                                     f"{fdd} first-hand, {fde} episodes ({dur})", "—",
                                     verdict(fdd == 0)))
                continue
            self.summary.append((f"(b) N = {n}: false suspicions/probe within ±30% of "
                                 f"{anchor:.2%}", f"{rate:.3%} ({ratio:.2f}×), {dur}",
                                 "analytic ≈ 0.77%", verdict(ok_rate)))
            self.summary.append((f"(b) N = {n}: zero false dead verdicts at 10% loss",
                                 f"{fdd} first-hand, {fde} episodes ({dur})", "—",
                                 verdict(fdd == 0)))
        self.add("")

    def section_c(self) -> None:
        p = self.plan
        self.add("### (c) Slow members (N = 100)", "",
                 f"C members are slowed for {p.slow_duration:.0f} s. *late*: every frame a "
                 "slowed member receives is handled 1–2 s after it arrived (in arrival "
                 "order; its timers run on time; its loop-lag monitor reports the delay "
                 "about once a second). *late-heavy* (extra, not the issue's model): the "
                 "same with 4–8 s. *stall*: the slowed member's whole loop stalls "
                 "(frames and timers held) for 1–2 s, runs for 1–3 s, and so on. "
                 f"{p.slow_crash_after:.0f} s into the slowdown a random healthy member "
                 "crashes; its detection time is measured from the crash. False dead "
                 "verdicts (first-hand declarations, summed over the runs; episodes in "
                 "brackets) exclude the crashed member. *Lifeguard* is the default "
                 "config; *plain SWIM* switches awareness, dynamic suspicion and the buddy "
                 "system off.", "")
        for mode, seeds in p.slow_seeds.items():
            self.add(f"**{mode}** ({seeds} seed{'s' if seeds > 1 else ''} per row)", "",
                     "| C | config | false dead about healthy | false dead about slowed | "
                     "suspicion episodes | crash → first dead p50 | crash → dead at every "
                     "healthy member p50 / max | → dead at every member p50 |",
                     "|---:|---|---:|---:|---:|---:|---|---:|")
            totals = {True: 0, False: 0}  # false dead verdicts about healthy members
            totals_all = {True: 0, False: 0}
            ok_le8 = True
            for count in p.slow_counts:
                for lg in (True, False):
                    rs = self.of("slow", lambda a, c=count, lg=lg, m=mode:
                                 a[1] == c and a[2] == m and a[3] == lg)
                    if not rs:
                        continue
                    fh = sum(r["false_dead_healthy"] for r in rs)
                    fs = sum(r["false_dead_slowed"] for r in rs)
                    eh = sum(r["episodes_healthy"] for r in rs)
                    es = sum(r["episodes_slowed"] for r in rs)
                    totals[lg] += fh
                    totals_all[lg] += fh + fs
                    if lg and count <= 8 and fh:
                        ok_le8 = False
                    first = [r["crash_first_dead"] for r in rs
                             if r["crash_first_dead"] is not None]
                    hd = [r["crash_dead_healthy"] for r in rs
                          if r["crash_dead_healthy"] is not None]
                    al = [r["crash_dead_all"] for r in rs if r["crash_dead_all"] is not None]
                    miss = len(rs) - len(hd)
                    hd_s = f"{f1(med(hd))} / {f1(max(hd) if hd else None)}"
                    if miss:
                        hd_s += f" ({miss} not within the slowdown)"
                    name = "Lifeguard" if lg else "plain SWIM"
                    self.add(f"| {count} | {name} | {fh} ({eh}) | {fs} ({es}) | "
                             f"{sum(r['suspect_episodes'] for r in rs):,} | "
                             f"{f1(med(first))} | {hd_s} | "
                             f"{f1(med(al)) if len(al) == len(rs) else f1(med(al)) + '*'} |")
            lg_t, pl_t = totals[True], totals[False]
            if lg_t == 0 and pl_t == 0:
                ratio_s = "about healthy members 0 vs 0: plain SWIM makes no false dead "
                ratio_s += "verdict either, so no ratio can be shown"
                ok_ratio = False
            elif lg_t == 0:
                ratio_s = f"about healthy members 0 vs {pl_t} (ratio ≥ {pl_t}×)"
                ok_ratio = pl_t >= 20
            else:
                ratio_s = f"about healthy members {lg_t} vs {pl_t} ({pl_t / lg_t:.1f}×)"
                ok_ratio = pl_t >= 20 * lg_t
            self.add("", f"Totals over all C ({mode}): false dead verdicts about healthy "
                     f"members: Lifeguard {lg_t}, plain SWIM {pl_t}; about any member "
                     f"(slowed ones included): Lifeguard {totals_all[True]}, plain SWIM "
                     f"{totals_all[False]}.", "")
            if mode not in ("late", "stall"):
                self.add("(Not one of the issue's targets: a harsher model that shows what "
                         "the Lifeguard mechanisms buy.)", "")
                self.summary.append((f"(c) {mode} (extra): false dead verdicts, Lifeguard vs "
                                     "plain SWIM", ratio_s, "Lifeguard > 50× fewer", "info"))
                continue
            self.summary.append((f"(c) {mode}: zero false dead about healthy members, "
                                 "Lifeguard, C ≤ 8", "see table", "Lifeguard: none until "
                                 "~16 of 100 slowed", verdict(ok_le8)))
            self.summary.append((f"(c) {mode}: ≥ 20× fewer false dead verdicts than plain "
                                 "SWIM", ratio_s, "Lifeguard > 50× fewer", verdict(ok_ratio)))
        self.add("`*` some runs did not reach every member within the slowdown (median of "
                 "the others).", "")

    def section_d(self) -> None:
        gi = CONFIG.gossip_interval
        self.add("### (d) Dissemination of one update", "",
                 "A random member announces itself at a higher incarnation (one fresh "
                 "update, as after a refutation), updates one at a time a few seconds "
                 f"apart. Rounds = time until the last member holds it / gossip interval "
                 f"({gi * 1000:.0f} ms); the update also rides on probes and acks. It "
                 "*misses someone* when no member has it queued any more while some member "
                 "still lacks it, so only push-pull (or a later refutation) can bring it. "
                 "Retransmit limit = 4·⌈log10(N+1)⌉.", "",
                 "| N | loss | updates | rounds p50 | rounds p99 | max | missed someone "
                 "until push-pull | retransmits per member | target |",
                 "|---:|---:|---:|---:|---:|---:|---|---:|---|")
        for loss in (0.0, LOSS):
            for n in NS:
                rs = self.of("spread", lambda a, n=n, loss=loss: a[0] == n and a[3] == loss)
                samples = [s for r in rs for s in r["samples"]]
                if not samples:
                    continue
                rounds = [s["full"] / gi for s in samples if s["full"] is not None]
                missed = sum(1 for s in samples if s["missed"])
                never = sum(1 for s in samples if s["full"] is None)
                missing = [s["missing_at_gossip_end"] for s in samples if s["missed"]]
                miss_s = f"{missed}/{len(samples)} ({missed / len(samples):.1%})"
                if missed:
                    miss_s += f", median {med(missing):.0f} member(s) short"
                if never:
                    miss_s += f"; {never} never complete within 300 s"
                target = "—"
                if n == 100 and loss == 0.0:
                    ok = pct(rounds, 99) <= 8 and not never
                    target = f"p99 ≤ 8: {verdict(ok)}"
                    self.summary.append(("(d) p99 gossip rounds ≤ 8 at N = 100",
                                         f"p50 {pct(rounds, 50):.1f}, p99 "
                                         f"{pct(rounds, 99):.1f} rounds", "—", verdict(ok)))
                self.add(f"| {n} | {loss:.0%} | {len(samples)} | {pct(rounds, 50):.1f} | "
                         f"{pct(rounds, 99):.1f} ({pct(rounds, 99) * gi:.1f} s) | "
                         f"{max(rounds):.1f} ({max(rounds) * gi:.1f} s) | {miss_s} | "
                         f"{retransmit_limit(CONFIG.retransmit_mult, n)} | {target} |")
        self.add("")

    def section_e(self) -> None:
        seeds, secs = self.plan.traffic
        self.add("### (e) Steady-state traffic", "",
                 f"No faults; {seeds} run(s) of {secs:.0f} s per N after convergence and "
                 "30 s of warm-up. Bytes are encoded frame sizes (msgpack envelope and "
                 "body); transport overhead is not included — over Rimio's HTTP transport "
                 "each packet also carries an HTTP request (headers, ~150–250 B) and "
                 "push-pull a request/response, so the packets/s column matters too. "
                 "Probe = ping, ack, ping-req, nack (with piggybacked updates); gossip = "
                 "gossip frames; push-pull = full-state exchange (memberlist scales its "
                 "interval up above 32 members).", "",
                 "| N | probe B/s (pkt/s) | gossip B/s (pkt/s) | push-pull B/s (pkt/s) | "
                 "total B/s per member | busiest member B/s | target |",
                 "|---:|---|---|---|---:|---:|---|")
        tot: dict[int, float] = {}
        for n in NS:
            rs = self.of("traffic", lambda a, n=n: a[0] == n)
            if not rs:
                continue

            def m(kind: str, key: str, rs: list[Any] = rs) -> float:
                return med([r[key][kind] for r in rs])
            total = med([sum(r["bytes"].values()) for r in rs])
            tot[n] = total
            target = "—"
            if n == 100:
                target = f"≤ 2 KB/s: {verdict(total <= 2048)}"
            self.add(f"| {n} | {m('probe', 'bytes'):,.0f} ({m('probe', 'packets'):.2f}) | "
                     f"{m('gossip', 'bytes'):,.0f} ({m('gossip', 'packets'):.2f}) | "
                     f"{m('push-pull', 'bytes'):,.0f} ({m('push-pull', 'packets'):.3f}) | "
                     f"{total:,.0f} | {max(r['max_member'] for r in rs):,.0f} | {target} |")
        if 100 in tot:
            self.summary.append(("(e) traffic per member ≤ 2 KB/s at N = 100",
                                 f"{tot[100]:,.0f} B/s", "—", verdict(tot[100] <= 2048)))
        if 10 in tot and 100 in tot:
            g = tot[100] / tot[10]
            self.add("", f"Growth from N = 10 to N = 100: {g:.2f}× (target < 2×: "
                     f"{verdict(g < 2)}).")
            self.summary.append(("(e) < 2× growth of per-member traffic, N = 10 → 100",
                                 f"{g:.2f}×", "—", verdict(g < 2)))
        self.add("")

    def section_f(self) -> None:
        self.add("### (f) Re-merge after a 50/50 partition", "",
                 "The members are split into two halves; the partition is held 60 s (each "
                 "half declares the other dead), then healed. Re-merge time = from the heal "
                 "until every member holds every member alive (checked every 250 ms, "
                 "bounded at 180 s). Re-merge relies on Rimio's reconnect: every 30 s each "
                 "member push-pulls with the last address of one dead member.", "",
                 "| N | runs | halves split (dead) after 60 s | re-merge p50 | p99 | max | "
                 "not within 180 s | target |",
                 "|---:|---:|---|---:|---:|---:|---:|---|")
        all_ok = True
        figs: list[str] = []
        for n in (10, 50):
            rs = self.of("partition", lambda a, n=n: a[0] == n)
            if not rs:
                continue
            ts = [r["remerge"] for r in rs if r["remerge"] is not None]
            never = len(rs) - len(ts)
            ok = not never and bool(ts) and med(ts) <= 35.0
            all_ok &= ok
            figs.append(f"N = {n}: p50 {f1(med(ts))} s, max {f1(max(ts) if ts else None)} s")
            self.add(f"| {n} | {len(rs)} | {sum(1 for r in rs if r['split'])}/{len(rs)} | "
                     f"{f1(med(ts))} s | {f1(pct(ts, 99))} s | {f1(max(ts) if ts else None)} s "
                     f"| {never} | ≤ 35 s (median): {verdict(ok)} |")
        self.summary.append(("(f) re-merge ≤ 35 s after heal (median)", "; ".join(figs),
                             "memberlist: no automatic re-merge", verdict(all_ok)))
        self.add("")

    def render(self, began: dt.datetime, wall: float, workers: int) -> str:
        for sec in (self.section_a, self.section_b, self.section_c, self.section_d,
                    self.section_e, self.section_f):
            sec()
        body = self.lines
        self.lines = []
        mode = "quick" if self.quick else "full"
        load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
        self.add("## Membership (simulated)", "",
                 "Generated by `python benchmarks/membership/run.py"
                 f"{' --quick' if self.quick else ''}` ({mode} mode) on "
                 f"{began:%Y-%m-%d %H:%M} UTC.", "",
                 "**Method.** Each scenario is one seeded `SimCluster` "
                 "(`rimio.testing.simcluster`) run "
                 "in its own `trio.run` under `trio.testing.MockClock(autojump_threshold=0)`: "
                 "N production `MembershipService`s (each driving a `rimio.core.swim.Member`) "
                 "exchange encoded frames over an "
                 "in-memory network (2 ms latency + up to 1 ms jitter per packet; loss only "
                 "where stated), with trio's scheduler seeded, so every figure replays "
                 "exactly from its seed. The protocol parameters are "
                 "`SwimConfig.memberlist_lan()`, hashicorp/memberlist's LAN profile (probe "
                 "1 s, ack timeout 500 ms, 3 indirect probes, suspicion mult 4, max-timeout "
                 "mult 6, retransmit mult 4, gossip 200 ms to 3 members, push-pull 30 s, "
                 "awareness max 8); rows marked *Rimio defaults* use `SwimConfig()`, which "
                 "differs only in retransmit mult 6. "
                 "Figures are medians and p99 over several seeds per point (p99 of fewer "
                 "than 100 samples is close to the maximum). Times are simulated seconds. "
                 "Nothing is tuned per scenario, and misses are reported as measured.", "",
                 "#### Targets", "",
                 "| target | figure | anchor | result |", "|---|---|---|---|")
        for target, fig, anchor, v in self.summary:
            self.add(f"| {target} | {fig} | {anchor} | {v} |")
        self.add("", *body)
        self.add("### Machine and run", "", "| | |", "|---|---|",
                 f"| date (UTC) | {began:%Y-%m-%d %H:%M:%S} |",
                 f"| mode | {mode} |",
                 f"| wall time | {wall:.0f} s with {workers} worker process(es) |",
                 "| wall time per scenario kind | " + ", ".join(
                     f"{k} {v:.0f} s" for k, v in sorted(self.wall.items())) + " (CPU-s "
                 "summed over workers) |",
                 f"| nproc | {os.cpu_count()} |",
                 f"| cpu | {_cpu_model()} |",
                 f"| python | {platform.python_implementation()} {platform.python_version()} |",
                 f"| trio | {trio.__version__} |",
                 f"| os | {platform.platform()} |",
                 f"| rimio | git {_git_rev()} |",
                 f"| load average at end | {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} |",
                 "", "### Reproduce", "", "```",
                 "cd /path/to/rimio && python benchmarks/membership/run.py "
                 "--out benchmarks/membership/results.md   # full, ~15 min on 2 cores",
                 "python benchmarks/membership/run.py --quick   # < 2 min, fewer seeds and "
                 "shorter runs", "```", "",
                 "Seeds are fixed in `tasks_for()`, so a rerun gives the same figures "
                 "(the simulator is deterministic from its seed; wall times differ).")
        if self.quick:
            self.add("", "Quick mode: fewer seeds, shorter runs (10% loss for 10 min at "
                     "N = 10 and 5 min at N = 50, no N = 100; C ∈ {1, 4, 16}, late mode "
                     "only); figures are indicative only.")
        return "\n".join(self.lines) + "\n"


# --------------------------------------------------------------------------
# Main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds, shorter runs (< 2 min)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the Markdown section here (default: stdout)")
    ap.add_argument("--json", type=Path, default=None, help="also dump raw results here")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    tasks = sorted(tasks_for(plan), key=_cost, reverse=True)
    began = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    results: list[tuple[str, tuple[Any, ...], Any, float]] = []
    print(f"{len(tasks)} scenarios, {args.workers} worker(s)", file=sys.stderr)
    if args.workers <= 1:
        for t in tasks:
            results.append(run_task(t))
    else:
        with cf.ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(run_task, t) for t in tasks]
            for i, fut in enumerate(cf.as_completed(futures), 1):
                res = fut.result()
                results.append(res)
                print(f"[{time.perf_counter() - t0:6.0f}s] {i}/{len(tasks)} {res[0]}"
                      f"{res[1]} {res[3]:.1f}s", file=sys.stderr)
    wall = time.perf_counter() - t0
    text = Report(plan, args.quick, results).render(began, wall, args.workers)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out} in {wall:.0f} s", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.json:
        args.json.write_text(json.dumps([{"scenario": n, "args": a, "result": r, "wall": w}
                                         for n, a, r, w in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
