"""Planted divergence: replicas made to disagree in every way, then healed
without a client (issue 8 item 9; RFC 0014 §7, RFC 0013).

`run_divergence_seed(seed)` starts a simulated 3-node cluster (R = 3, the
`rimio.testing.chaos` harness: full nodes, in-memory network, MockClock,
background anti-entropy off), writes objects through the public API (inline,
one part file, several part files), and then makes the replicas diverge
behind the cluster's back, per path one `Kind`, planted directly in chosen
replicas' stores (through the replica protocol of `Node.replica`, or on
their disks): a head missing on one or two replicas, a stale generation, a
tombstone against a meta of the same generation, a part file missing, a
flipped bit in a part file or in an inline row, and a stale generation whose
newer version is damaged on one of its two holders (the source anti-entropy
reads from may be bad).

Then, with no client request, every node runs rounds of anti-entropy one
after the other, and the harness records after how many node-rounds every
replica held the winning head of every path (by head order, RFC 0001) and
the slot digests were identical. Only then are the paths read through every
node, and each read must answer the winner's bytes (verified) or 410; a read
answering 200 with bytes that are not the winner's is the failure this suite
exists to catch. Last, each replica's copy of every part is read directly on
that replica: the damaged ones must have been fetched again.

Which mechanism heals which divergence:

* head divergences (`HEAD_KINDS`): anti-entropy alone; its digests cover
  heads, so these are exactly what it sees. It moves bytes only after they
  passed their check at the source and matched the etag, so a damaged source
  makes a transfer fail (counted; the good holder serves it), never copies
  the damage.
* byte divergences under an identical head (`BYTE_KINDS`): invisible to
  anti-entropy (the heads, hence the digests, agree). A verified read
  (RFC 0013) of the damaged copy fails its check (or finds the file gone),
  falls back to another holder, quarantines the bad file or row and has the
  part fetched again (read repair's refetch). Each node reads its own copy
  first, so reading every path through every node reaches every damaged
  copy. (The scrubber of issue 8 item 7 will find them without reads.)

The bound, and why: every slot is held by all three nodes, and a round on a
node reconciles it with each peer in turn, pushing and pulling until both
hold the better head of every path. After the first node's round it and
its last peer hold the winner of every path (it compared with everyone);
every later node's round compares with the first node. So one round on each
node suffices, and one fewer already converges: `CONVERGENCE_BOUND` = N - 1
node-rounds. A damaged source does not break the bound: the first two
node-rounds compare every pair of the three nodes, the stale replica and the
good holder among them, and that transfer succeeds (a failed path is skipped,
not its whole slot: `AntiEntropy.sync_slot`). A second sweep must find
nothing to move and nothing failing.
"""

from __future__ import annotations

import gc
import hashlib
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import trio
import trio.testing

from rimio.core.head import Head, winner
from rimio.core.parts import part_count
from rimio.core.replica import PartInfo
from rimio.core.slots import slot_for_path
from rimio.net.sim import LinkProfile
from rimio.node import Node
from rimio.storage.replica import LocalReplica
from rimio.storage.store import LocalStore
from rimio.testing import damage
from rimio.testing.chaos import EPOCH, ChaosCluster, ChaosParams, _scratch
from rimio.testing.damage import flip_bit
from rimio.testing.determinism import seed_trio_scheduler

__all__ = [
    "BYTE_KINDS",
    "CONVERGENCE_BOUND",
    "DAMAGED_KINDS",
    "DIVERGENCE_PARAMS",
    "FLIPPED_KINDS",
    "HEAD_KINDS",
    "DivergenceResult",
    "Kind",
    "Plant",
    "flip_bit",
    "flip_inline_bit",
    "part_file",
    "plan_divergence",
    "play_divergence",
    "put_version",
    "run_divergence_seed",
    "run_in_sim",
]

T = TypeVar("T")


class Kind(StrEnum):
    """One way a path's replicas can disagree."""

    # a version (meta or tombstone) on two replicas, nothing on the third
    MISSING_ON_ONE = "missing_on_one"
    # a tombstone on one replica, nothing on the two others
    MISSING_ON_TWO = "missing_on_two"
    # a meta on one replica, nothing elsewhere
    ONLY_ON_ONE = "only_on_one"
    # written to all; a newer generation (meta or tombstone) reached two
    STALE_GENERATION = "stale_generation"
    # written to all; a tombstone of the same generation on one (it wins)
    TOMBSTONE_SAME_GENERATION = "tombstone_same_generation"
    # written to all; one replica's file of one part is gone
    PART_MISSING = "part_missing"
    # written to all; one bit flipped in one part file of one replica
    PART_FLIPPED = "part_flipped"
    # written to all (inline); one bit flipped in one replica's SQLite row
    INLINE_CORRUPTED = "inline_corrupted"
    # written to all; a newer generation reached two, and one of those two
    # has a bit flipped in it: the source anti-entropy may read from is bad
    DAMAGED_SOURCE = "damaged_source"


HEAD_KINDS = frozenset({Kind.MISSING_ON_ONE, Kind.MISSING_ON_TWO, Kind.ONLY_ON_ONE,
                        Kind.STALE_GENERATION, Kind.TOMBSTONE_SAME_GENERATION,
                        Kind.DAMAGED_SOURCE})
"""Divergences of heads: healed by anti-entropy alone."""

BYTE_KINDS = frozenset({Kind.PART_MISSING, Kind.PART_FLIPPED, Kind.INLINE_CORRUPTED})
"""Divergences of bytes under one head: healed by verified reads (RFC 0013)."""

DAMAGED_KINDS = frozenset({*BYTE_KINDS, Kind.DAMAGED_SOURCE})
"""Kinds that leave one copy of the winner damaged or gone: each is fetched
again after a verified read refused it."""

FLIPPED_KINDS = frozenset({Kind.PART_FLIPPED, Kind.INLINE_CORRUPTED, Kind.DAMAGED_SOURCE})
"""Kinds that flip a bit: each bad copy ends in the quarantine."""

# Kinds whose path is first written by a client, to all three replicas.
_WRITTEN_FIRST = frozenset({Kind.STALE_GENERATION, Kind.TOMBSTONE_SAME_GENERATION,
                            Kind.DAMAGED_SOURCE, *BYTE_KINDS})

DIVERGENCE_PARAMS = ChaosParams(nodes=3, spares=0, replicas=3, total_slots=64,
                                part_size=4096, inline_max_bytes=1024, repair_interval=0.0)
"""Three nodes, R = 3; 4 KiB parts, so objects of a few parts stay small;
no anti-entropy in the background: only the rounds the harness runs, counted."""

CONVERGENCE_BOUND = DIVERGENCE_PARAMS.nodes - 1
"""Node-rounds (one node's round over its peers, nodes in turn) after which
every replica holds every winner (module docstring)."""

SWEEPS = 2
"""Rounds run on every node: the first converges, the second must move nothing."""


@dataclass(frozen=True, slots=True)
class Plant:
    """The divergence planted on one path. `nodes`: the replicas it is
    planted on. `size`: the planted version's bytes (0 for a tombstone; for
    a byte kind, the damaged object's). `base_size`: the bytes of the version
    a client first writes to all three (0: none is). `damaged`: the replica
    whose copy is damaged, `part` and `bit`: the part and the bit flipped in
    it (`DAMAGED_KINDS`)."""

    path: str
    kind: Kind
    nodes: tuple[str, ...]
    size: int
    base_size: int = 0
    tombstone: bool = False
    damaged: str = ""
    part: int = 0
    bit: int = 0


def _size(rng: random.Random, shape: str, part_size: int, inline_max: int) -> int:
    if shape == "inline":
        return rng.randint(1, inline_max)
    if shape == "one_part":
        return rng.randint(inline_max + 1, part_size)
    return rng.randint(part_size + 1, 4 * part_size)


def plan_divergence(rng: random.Random, nodes: Sequence[str], paths: int, *,
                    part_size: int, inline_max: int) -> list[Plant]:
    """`paths` plants, every kind as evenly as `paths` allows, in a seeded
    order, each on seeded replicas with seeded sizes and damage."""
    kinds = [list(Kind)[i % len(Kind)] for i in range(paths)]
    rng.shuffle(kinds)
    plants = []
    for i, kind in enumerate(kinds):
        path = f"div/{i:03d}"
        if kind in (Kind.MISSING_ON_ONE, Kind.STALE_GENERATION):
            chosen = rng.sample(list(nodes), 2)
            tombstone = rng.random() < 0.25
        elif kind is Kind.DAMAGED_SOURCE:
            chosen = rng.sample(list(nodes), 2)
            tombstone = False
        else:
            chosen = [rng.choice(list(nodes))]
            tombstone = kind in (Kind.MISSING_ON_TWO, Kind.TOMBSTONE_SAME_GENERATION)
        if kind is Kind.INLINE_CORRUPTED:
            shape = "inline"
        elif kind in (Kind.PART_MISSING, Kind.PART_FLIPPED):
            shape = rng.choice(["one_part", "parts"])
        else:
            shape = rng.choice(["inline", "one_part", "parts"])
        size = _size(rng, shape, part_size, inline_max)
        base_size = 0
        if kind in BYTE_KINDS:
            base_size = size
        elif kind in _WRITTEN_FIRST:
            base_size = _size(rng, rng.choice(["inline", "one_part", "parts"]), part_size,
                              inline_max)
        damaged, part, bit = "", 0, 0
        if kind in DAMAGED_KINDS:
            damaged = rng.choice(chosen)
            part = rng.randrange(part_count(size, part_size))
            part_bytes = min(part_size, size - part * part_size)
            bit = rng.randrange(part_bytes * 8)
        plants.append(Plant(path, kind, tuple(sorted(chosen)), 0 if tombstone else size,
                            base_size, tombstone, damaged, part, bit))
    return plants


def _content(seed: int, path: str, generation: int, size: int) -> bytes:
    """The bytes of a version: a function of the seed, path and generation."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{path}/{generation}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass(slots=True)
class DivergenceResult:
    seed: int
    plants: list[Plant]
    # node-rounds (nodes in turn) after which every replica held every
    # winner and the slot digests were identical; None: never
    rounds_to_converge: int | None = None
    node_rounds: int = 0
    # heads moved by anti-entropy in the first sweep, and in the second
    moved_first: int = 0
    moved_second: int = 0
    # transfers that failed in each sweep (a damaged source refuses to serve)
    failed_first: int = 0
    failed_second: int = 0
    refetched: int = 0  # parts read repair fetched again
    quarantined: int = 0
    reads: Counter[str] = field(default_factory=Counter)  # read answers by status
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        kinds = Counter(p.kind.value for p in self.plants)
        return "\n".join([
            f"seed {self.seed}: {len(self.problems)} problem(s)",
            *self.problems,
            f"plants: {dict(sorted(kinds.items()))}",
            f"converged after {self.rounds_to_converge} node-round(s) "
            f"(bound {CONVERGENCE_BOUND}); moved {self.moved_first} then "
            f"{self.moved_second}, failed {self.failed_first} then {self.failed_second}",
            f"reads {dict(self.reads)}; refetched {self.refetched}, "
            f"quarantined {self.quarantined}",
            f"replay: python -m pytest tests/sim/test_divergence.py -p no:cacheprovider "
            f"--divergence-seed {self.seed}",
        ])


# -- planting -------------------------------------------------------------------------


async def _one(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


async def put_version(replica: LocalReplica, head: Head, data: bytes, inline_max: int) -> None:
    """Give `replica` the version `head` (with `data`) through the replica
    protocol, as a write's coordinator would: parts then head, or the bytes
    inline with the head for a small object."""
    if head.deleted:
        answer = await replica.apply_head(head, (), None, None, 0)
    elif head.size_bytes <= inline_max:
        answer = await replica.apply_head(head, (), data, None, 0)
    else:
        parts: list[PartInfo] = []
        for index in range(head.part_count):
            chunk = data[index * head.part_size:(index + 1) * head.part_size]
            parts.append(await replica.put_part(head.slot_id, head.path, head.generation,
                                                index, _one(chunk)))
        answer = await replica.apply_head(head, parts, None, None, 0)
    if not answer.applied:
        raise AssertionError(f"{replica.node_id} did not apply the planted {head}")


async def part_file(store: LocalStore, head: Head, index: int) -> Path:
    """The file of part `index` of `store`'s current head of `head.path`."""
    obj = await store.get_object(head.slot_id, head.path)
    if obj is None or obj.head != head:
        raise AssertionError(f"{head.path}: not the head expected")
    local = obj.parts[index].local_path
    if local is None:
        raise AssertionError(f"{head.path}: part {index} is inline")
    return obj.slot_dir / local


def flip_inline_bit(store: LocalStore, head: Head, index: int, bit: int) -> None:
    """Flip one bit of the inline bytes of part `index` of `head`, in the
    slot's SQLite row, behind the store's back (as a bad sector would)."""
    damage.flip_inline_bit(store.group_path(head.slot_id), bit, path=head.path,
                           slot=head.slot_id, generation=head.generation,
                           head_sha256=head.sha256, index=index)
    # The read cache may hold the object's good bytes: a bad sector does not
    # reach into memory, but the point here is to read the disk.
    store.read_cache.clear()


class _Planter:
    def __init__(self, seed: int, cluster: ChaosCluster, plants: list[Plant]) -> None:
        self.seed = seed
        self.cluster = cluster
        self.plants = plants
        self.params = cluster.params
        self.data: dict[str, bytes] = {}  # etag -> bytes of every version
        self.expected: dict[str, Head] = {}  # path -> the winner of every head planted
        self.damaged: Counter[str] = Counter()  # node -> bits flipped there

    def node(self, node_id: str) -> Node:
        node = self.cluster.hosts[node_id].node
        assert node is not None
        return node

    def replica(self, node_id: str) -> LocalReplica:
        replica = self.node(node_id).replica
        assert replica is not None
        return replica

    def version(self, path: str, generation: int, size: int, *, tombstone: bool) -> Head:
        slot = slot_for_path(path, self.params.total_slots)
        stamp = EPOCH + self.cluster.now()
        write_id = f"plant-{generation}"
        if tombstone:
            return Head(kind="tombstone", path=path, slot_id=slot, generation=generation,
                        write_id=write_id, timestamp=stamp)
        data = _content(self.seed, path, generation, size)
        etag = hashlib.sha256(data).hexdigest()
        self.data[etag] = data
        return Head(kind="meta", path=path, slot_id=slot, generation=generation,
                    write_id=write_id, size_bytes=size, etag=etag,
                    part_size=self.params.part_size,
                    part_count=part_count(size, self.params.part_size), timestamp=stamp)

    async def write_through_client(self, plants: list[Plant]) -> None:
        """The paths that start written to all three replicas, by clients."""
        async with self.cluster.client("writer") as http:
            for i, plant in enumerate(p for p in plants if p.kind in _WRITTEN_FIRST):
                data = _content(self.seed, plant.path, 0, plant.base_size)
                node = self.cluster.founders[i % len(self.cluster.founders)]
                url = f"http://{self.cluster.address(node)}/api/v1/blobs/{quote(plant.path)}"
                r = await http.put(url, content=data)
                if r.status_code != 201:
                    raise AssertionError(f"PUT {plant.path}: {r.status_code} {r.text}")
                self.data[hashlib.sha256(data).hexdigest()] = data
        await trio.sleep(1.0)  # the third replica's apply lands after the answer

    async def base_head(self, path: str) -> Head:
        """The head a client write left on all three replicas."""
        heads = {(await self.replica(n).get_head(slot_for_path(path, self.params.total_slots),
                                                 path)).head for n in self.cluster.founders}
        if len(heads) != 1 or None in heads:
            raise AssertionError(f"{path}: the replicas do not agree after the write: {heads}")
        head = heads.pop()
        assert head is not None
        return head

    async def plant(self, plant: Plant) -> None:
        inline_max = self.params.inline_max_bytes
        if plant.kind not in _WRITTEN_FIRST:
            head = self.version(plant.path, 1, plant.size, tombstone=plant.tombstone)
            for node_id in plant.nodes:
                await put_version(self.replica(node_id), head, self.data.get(head.etag, b""),
                                  inline_max)
            self.expected[plant.path] = head
            return
        base = await self.base_head(plant.path)
        if plant.kind in (Kind.STALE_GENERATION, Kind.DAMAGED_SOURCE):
            newer = self.version(plant.path, base.generation + 1, plant.size,
                                 tombstone=plant.tombstone)
            for node_id in plant.nodes:
                await put_version(self.replica(node_id), newer,
                                  self.data.get(newer.etag, b""), inline_max)
            if plant.kind is Kind.DAMAGED_SOURCE:
                await self.damage(plant, newer)
            self.expected[plant.path] = newer
        elif plant.kind is Kind.TOMBSTONE_SAME_GENERATION:
            tomb = self.version(plant.path, base.generation, 0, tombstone=True)
            for node_id in plant.nodes:
                await put_version(self.replica(node_id), tomb, b"", inline_max)
            best = winner([base, tomb])
            assert best is tomb, "at one generation a tombstone beats a meta (RFC 0001)"
            self.expected[plant.path] = tomb
        else:
            await self.damage(plant, base)
            self.expected[plant.path] = base

    async def damage(self, plant: Plant, head: Head) -> None:
        """Flip the plant's bit in `plant.damaged`'s copy of `head` (its
        inline row or its part file), or remove the part file."""
        store = self.node(plant.damaged).store
        if head.size_bytes <= self.params.inline_max_bytes:
            assert plant.kind is not Kind.PART_MISSING
            flip_inline_bit(store, head, plant.part, plant.bit)
        else:
            file = await part_file(store, head, plant.part)
            if plant.kind is Kind.PART_MISSING:
                file.unlink()
            else:
                flip_bit(file, plant.bit)
            store.read_cache.clear()
        if plant.kind in FLIPPED_KINDS:
            self.damaged[plant.damaged] += 1


# -- checking -------------------------------------------------------------------------


async def _heads_match(planter: _Planter) -> list[str]:
    """Where a replica's head differs from the winner (empty: converged)."""
    out = []
    for node_id in planter.cluster.founders:
        replica = planter.replica(node_id)
        for path, want in planter.expected.items():
            got = (await replica.get_head(want.slot_id, path)).head
            if got != want:
                out.append(f"{node_id} {path}: {got} instead of {want}")
    return out


async def _digests_agree(planter: _Planter) -> bool:
    tops = [await planter.replica(n).digest_tops() for n in planter.cluster.founders]
    return all(t == tops[0] for t in tops)


def _moved(nodes: list[Node]) -> int:
    total = 0
    for node in nodes:
        assert node.antientropy is not None
        total += node.antientropy.stats.heads_pulled + node.antientropy.stats.heads_pushed
    return total


def _failures(nodes: list[Node]) -> int:
    return sum(node.antientropy.stats.failures for node in nodes
               if node.antientropy is not None)


async def _anti_entropy(planter: _Planter, result: DivergenceResult, sweeps: int) -> None:
    """`sweeps` rounds on every node in turn, no client involved; when did
    the replicas converge?"""
    nodes = [planter.node(n) for n in planter.cluster.founders]
    for sweep in range(sweeps):
        before, failed_before = _moved(nodes), _failures(nodes)
        for node in nodes:
            assert node.antientropy is not None
            await node.antientropy.round()
            result.node_rounds += 1
            if (result.rounds_to_converge is None and not await _heads_match(planter)
                    and await _digests_agree(planter)):
                result.rounds_to_converge = result.node_rounds
        if sweep == 0:
            result.moved_first = _moved(nodes) - before
            result.failed_first = _failures(nodes) - failed_before
        else:
            result.moved_second = _moved(nodes) - before
            result.failed_second = _failures(nodes) - failed_before
    # A transfer fails only when its source is the damaged copy of a
    # DAMAGED_SOURCE path: the holder pushing it, or the stale replica
    # pulling it from there, at most twice per such path (its next try
    # goes to the good holder, or that one pushed first).
    allowed = 2 * sum(1 for p in planter.plants if p.kind is Kind.DAMAGED_SOURCE)
    if result.failed_first > allowed or result.failed_second:
        errors = [n.antientropy.stats.last_error for n in nodes if n.antientropy is not None]
        result.problems.append(f"{result.failed_first} + {result.failed_second} transfers "
                               f"failed, at most {allowed} + 0 may (last errors: {errors})")
    if result.rounds_to_converge is None:
        result.problems.extend(await _heads_match(planter))
        result.problems.append(f"not converged after {sweeps} sweeps")
    elif result.rounds_to_converge > CONVERGENCE_BOUND:
        result.problems.append(f"converged after {result.rounds_to_converge} node-rounds, "
                               f"more than the bound {CONVERGENCE_BOUND}")
    if result.moved_second:
        result.problems.append(f"the second sweep moved {result.moved_second} heads")


async def _read_everything(planter: _Planter, result: DivergenceResult) -> None:
    """Every path through every node: the winner's bytes or 410, and never a
    200 with other bytes."""
    cluster = planter.cluster
    async with cluster.client("reader") as http:
        for path, want in sorted(planter.expected.items()):
            for node_id in cluster.founders:
                url = f"http://{cluster.address(node_id)}/api/v1/blobs/{quote(path)}"
                try:
                    r = await http.get(url)
                except Exception as exc:  # a broken response: a short body, not wrong bytes
                    result.reads[type(exc).__name__] += 1
                    result.problems.append(f"GET {path} via {node_id}: {exc!r}")
                    continue
                result.reads[str(r.status_code)] += 1
                if r.status_code == 200:
                    body = hashlib.sha256(r.content).hexdigest()
                    if body != r.headers["etag"].strip('"'):
                        result.problems.append(f"SERVED WRONG BYTES: GET {path} via "
                                               f"{node_id}: 200 with bytes that are not "
                                               f"its etag's")
                    if want.deleted or body != want.etag or int(
                            r.headers["x-rimio-generation"]) != want.generation:
                        result.problems.append(f"GET {path} via {node_id}: 200 with "
                                               f"{body[:12]}, the winner is {want}")
                elif r.status_code == 410 and want.deleted:
                    pass
                else:
                    result.problems.append(f"GET {path} via {node_id}: {r.status_code} "
                                           f"{r.text[:200]}, the winner is {want}")


async def _every_copy_whole(planter: _Planter, result: DivergenceResult) -> None:
    """Each replica's own copy of every part of every winner, read (and
    verified) on that replica: the damaged copies were fetched again."""
    for node_id in planter.cluster.founders:
        replica = planter.replica(node_id)
        for path, want in sorted(planter.expected.items()):
            if want.deleted:
                continue
            data = planter.data[want.etag]
            for index in range(want.part_count):
                start = index * want.part_size
                end = min(start + want.part_size, want.size_bytes)
                try:
                    got = b"".join([c async for c in replica.read_part(want, index, 0,
                                                                       end - start)])
                except Exception as exc:
                    result.problems.append(f"{node_id} {path}: part {index} not healed: "
                                           f"{exc!r}")
                    continue
                if got != data[start:end]:
                    result.problems.append(f"{node_id} {path}: part {index} has other bytes")


async def play_divergence(cluster: ChaosCluster, seed: int, paths: int, *,
                          sweeps: int = SWEEPS) -> DivergenceResult:
    """One seed's scenario on a cluster whose membership has formed
    (`sweeps`: rounds of anti-entropy on every node; 0 shows that the
    suite needs them)."""
    params = cluster.params
    plants = plan_divergence(random.Random(f"divergence-plan/{seed}"), cluster.founders, paths,
                             part_size=params.part_size, inline_max=params.inline_max_bytes)
    result = DivergenceResult(seed, plants)
    planter = _Planter(seed, cluster, plants)
    await planter.write_through_client(plants)
    for plant in plants:
        await planter.plant(plant)
    differ = {p.path for p in plants if p.kind in HEAD_KINDS}
    if not differ or await _digests_agree(planter):
        result.problems.append("the planted head divergences do not show in the digests")
    await _anti_entropy(planter, result, sweeps)
    nodes = [planter.node(n) for n in cluster.founders]
    # Byte damage under one head is still there: anti-entropy compares heads
    # only. It read (and refused) at most the damaged sources.
    sources = sum(1 for p in plants if p.kind is Kind.DAMAGED_SOURCE)
    if sum(n.store.verify_stats.errors for n in nodes) > sources:
        result.problems.append("a part under an identical head was checked before any read")
    await _read_everything(planter, result)
    await trio.sleep(5.0)  # the refetches run behind the reads
    await _every_copy_whole(planter, result)
    for node in nodes:
        assert node.objects is not None and node.objects.coordinator is not None
        result.refetched += node.objects.coordinator.repair.refetched
        quarantined = node.store.verify_stats.quarantined
        result.quarantined += quarantined
        if quarantined != planter.damaged[node.node_id]:
            result.problems.append(f"{node.node_id}: {quarantined} parts quarantined, "
                                   f"{planter.damaged[node.node_id]} were damaged")
    lost = sum(1 for p in plants if p.kind in DAMAGED_KINDS)
    if result.refetched < lost:
        result.problems.append(f"{result.refetched} parts fetched again, {lost} were lost")
    if not await _digests_agree(planter):
        result.problems.append("the slot digests differ at the end")
    return result


def run_in_sim(seed: int, scenario: Callable[[ChaosCluster], Awaitable[T]],
               params: ChaosParams = DIVERGENCE_PARAMS, base_dir: Path | None = None) -> T:
    """`scenario(cluster)` on a simulated cluster of `params` (default: three
    nodes, R = 3, small parts, no background anti-entropy) whose membership
    has formed, in its own trio run under a MockClock, deterministic as
    `rimio.testing.chaos.run_seed` is (same seed, same run)."""
    own = base_dir is None
    root = (Path(tempfile.mkdtemp(prefix=f"divergence-{seed}-", dir=_scratch()))
            if own else base_dir)
    assert root is not None

    async def main() -> T:
        rng = random.Random(seed)
        link = LinkProfile(latency=0.001, jitter=rng.choice([0.0, 0.005]))
        async with ChaosCluster(root, params, random.Random(rng.getrandbits(64)),
                                link) as cluster:
            while not cluster.converged():  # noqa: ASYNC110 - simulated time
                await trio.sleep(0.5)
            return await scenario(cluster)

    gc.collect()
    gc.disable()
    try:
        seed_trio_scheduler(seed)
        try:
            return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        except BaseExceptionGroup as group:
            # the cluster's nursery wraps what the scenario raised: one failed
            # assertion reads better unwrapped
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    finally:
        gc.enable()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def run_divergence_seed(seed: int, paths: int = 4 * len(Kind)) -> DivergenceResult:
    """Plant `paths` divergences (every kind) on a fresh cluster, heal, check."""
    return run_in_sim(seed, lambda cluster: play_divergence(cluster, seed, paths))
