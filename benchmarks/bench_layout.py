"""Layout benchmark: what the cluster layout costs per operation at 2048 slots (issue 7).

Run it as::

    python benchmarks/bench_layout.py [--join] [--repeat N]

Per operation, on a 3-node R = 3 layout that a 4th node joined (2048 slots,
the default), it prints the median microseconds of:

* ``join``: `Layout.join` of the 4th node;
* ``confirm``: the 4th node confirms one slot it is a target of;
* ``drop``: a founder gives up one slot the 4th node now holds;
* ``merge (differ)``: two layouts that each made a change the other has not;
* ``merge (equal)``: a layout and its decoded copy (what most exchanges are);
* ``digest``: the digest of a layout just made by a confirm;
* ``encode``: the layout frame of a layout just made by a confirm;
* ``decode``: parsing that frame back (untrusted input, fully checked), its
  holdings met before (as in most exchanges);
* ``decode (unseen)``: the same with no holding met before.

With ``--join`` it also times, in one trio program, a 4th node joining an
in-process 3-node cluster (`rimio.testing.LocalCluster`, memory gossip, R = 3,
2048 slots, 30 small objects in place) until every layout is at rest, then
that node's decommission until it is removed and the layouts are at rest
again: the wall time and the CPU time (all four nodes share this process) of
each.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from rimio.core import layout_frames  # noqa: E402
from rimio.core.layout import Layout, merge  # noqa: E402
from rimio.core.layout_frames import decode_layout, encode_layout  # noqa: E402
from rimio.core.slots import DEFAULT_TOTAL_SLOTS  # noqa: E402

SLOTS = DEFAULT_TOTAL_SLOTS
NEW = "node-4"
CLUSTER = "bench"


def _founding() -> Layout:
    return Layout.founding({f"node-{i}": f"127.0.0.1:{7000 + i}" for i in (1, 2, 3)},
                           total_slots=SLOTS, replicas=3, write_quorum=None)


def _time(label: str, make_input: Callable[[int], Any], op: Callable[[Any], Any],
          repeat: int) -> tuple[str, float]:
    """Median µs of `op(make_input(i))` over `repeat` runs; inputs are made
    before the clock starts, so cached state of one run never helps the next."""
    inputs = [make_input(i) for i in range(repeat)]
    samples = []
    for x in inputs:
        start = time.perf_counter()
        op(x)
        samples.append((time.perf_counter() - start) * 1e6)
    return label, statistics.median(samples)


def per_operation(repeat: int) -> list[tuple[str, float]]:
    base = _founding()
    joined = base.join(NEW, "127.0.0.1:7004")
    todo = sorted(joined.slots_to_copy(NEW))
    assert len(todo) >= repeat, "fewer slots to copy than runs"
    # a chain of confirms, as a mover that confirms one slot at a time makes
    chain = [joined]
    for slot in todo[:repeat]:
        chain.append(chain[-1].confirm(NEW, slot))

    def fresh(i: int) -> Layout:
        # an equal layout that computed nothing yet (no cached digest, targets)
        return decode_layout(encode_layout(chain[i], cluster=CLUSTER), max_size=1 << 20)

    held = chain[-1]

    def droppable(i: int) -> tuple[Layout, str, int]:
        slot = todo[i]
        leaver = next(n for n in held.holders(slot) if n not in held.targets(slot))
        return held, leaver, slot

    def diverged(i: int) -> tuple[Layout, Layout]:
        layout, leaver, slot = droppable(i)
        return layout.drop(leaver, slot), layout.confirm(NEW, todo[repeat + i])

    frames = [encode_layout(layout, cluster=CLUSTER) for layout in chain]
    return [
        _time("join", lambda i: base, lambda b: b.join(NEW, "a:1"), repeat),
        _time("confirm (one slot)", lambda i: (chain[i], todo[i]),
              lambda x: x[0].confirm(NEW, x[1]), repeat),
        _time("drop (one slot)", droppable, lambda x: x[0].drop(x[1], x[2]), repeat),
        _time("merge (differ)", diverged, lambda x: merge(x[0], x[1]), repeat),
        _time("merge (equal)", lambda i: (chain[i + 1], fresh(i + 1)),
              lambda x: merge(x[0], x[1]), repeat),
        _time("digest", lambda i: chain[i].confirm(NEW, todo[i]), lambda x: x.digest, repeat),
        _time("encode", lambda i: chain[i].confirm(NEW, todo[i]),
              lambda x: encode_layout(x, cluster=CLUSTER), repeat),
        _time("decode", lambda i: frames[i + 1],
              lambda x: decode_layout(x, max_size=1 << 20, cluster=CLUSTER), repeat),
        _time("decode (unseen)", lambda i: _forget_holdings(frames[i + 1]),
              lambda x: decode_layout(x, max_size=1 << 20, cluster=CLUSTER), repeat),
    ]


def _forget_holdings(frame: bytes) -> bytes:
    """`frame`, with the frame codec's memory of holdings met before (if it
    has one) cleared: a decode that builds every holding's slot set."""
    getattr(layout_frames, "_HOLDINGS", {}).clear()
    return frame


def _cpu() -> float:
    """CPU seconds of this process so far, every thread (nodes and workers)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _join_and_decommission(base_dir: Path) -> tuple[float, float, float, float, int]:
    import httpx
    import trio

    from rimio.core.frames import Status
    from rimio.core.layout import Role
    from rimio.testing import LocalCluster

    async with LocalCluster(base_dir, 3, transport="memory", replicas=3) as c, \
            httpx.AsyncClient(timeout=30) as client:
        def layouts() -> list[Layout]:
            return [n.layout.current for n in c.nodes.values() if n.layout is not None]

        def at_rest() -> bool:
            found = layouts()
            return len({lay.digest for lay in found}) == 1 and found[0].moving_slots() == 0

        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=30)
        founders = list(c.nodes.values())
        for i in range(30):
            r = await client.put(f"{founders[i % 3].url}/api/v1/blobs/obj/{i}",
                                 content=b"x" * 1000)
            assert r.status_code == 201, r.text
        start, cpu = trio.current_time(), _cpu()
        new = await c.add_node(NEW)
        await c.wait_for(lambda: at_rest() and layouts()[0].role(NEW) is Role.ACTIVE,
                         within=600, interval=0.1)
        joined, join_cpu = trio.current_time() - start, _cpu() - cpu
        held = len(layouts()[0].held_by(NEW))
        assert new.layout is not None
        start, cpu = trio.current_time(), _cpu()
        await new.layout.update(lambda lay: lay.decommission(NEW))
        await c.wait_for(lambda: at_rest() and layouts()[0].role(NEW) is Role.REMOVED,
                         within=600, interval=0.1)
        return joined, join_cpu, trio.current_time() - start, _cpu() - cpu, held


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="runs of each operation")
    parser.add_argument("--join", action="store_true",
                        help="also time an in-process join and decommission")
    args = parser.parse_args(argv)
    print(f"layout operations at {SLOTS} slots, 3 -> 4 nodes, R = 3 "
          f"(median of {args.repeat} runs)")
    for label, micros in per_operation(args.repeat):
        print(f"  {label:<20} {micros:>10.1f} µs")
    if args.join:
        import trio

        with tempfile.TemporaryDirectory() as tmp:
            joined, join_cpu, left, left_cpu, held = trio.run(_join_and_decommission,
                                                              Path(tmp))
        print(f"in-process join of a 4th node ({held} slots copied in): "
              f"{joined:.1f} s wall, {join_cpu:.1f} s CPU")
        print(f"in-process decommission of that node: {left:.1f} s wall, {left_cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
