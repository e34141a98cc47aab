"""The chaos checker: what a history of client operations must satisfy.

Pure: it reads a `History` (the client operations with their invoke and
complete times and outcomes, the final state of every replica after healing,
the bytes read back, and the log of every head a replica applied) and returns
the `Violation`s it finds, each naming the operations involved. No I/O, no
clock: the harness (`rimio.testing.chaos`) records, this module judges.

The rules (RFC 0011 §8):

* ``lost_write`` — no acknowledged write is lost: the final head of a path is
  at least the highest acknowledged write of it, by head order (generation,
  then a tombstone beats a meta). Two writes acknowledged at the same
  generation are told apart by head hash, which a client never sees: the final
  head then only has to be one of them, or a PUT whose outcome is unknown.
* ``stale_read`` — every read (GET, LIST) that was not marked degraded
  reflects every write acknowledged before the read began: the generation it
  saw is at least that write's.
* ``generation_backwards`` — no replica ever applies, for one path, a
  generation lower than one it applied before.
* ``replicas_diverge`` — after healing, every replica of a slot holds the same
  heads.
* ``phantom_read`` — no read returned bytes that were never written: the
  SHA-256 of every body a read returned (during the run or after healing) is
  the etag of some PUT of that path that was attempted, whatever its outcome.

What is *not* a violation: an operation that failed (503 quorum lost, an
unreachable slot at R = 1) or whose outcome is unknown (a timeout, a 503
``outcome_unknown``). Unknown writes may or may not have happened, so they
count as attempted (their bytes may be read) but never as acknowledged. As
in any checker of indeterminate operations, an unknown write may take effect
at any moment after it was invoked, even after its client gave up: a part of
it left on a minority of replicas can surface once they heal. So it may be
the final head at the generation of a later acknowledged write (both chose
that generation from quorums that did not overlap on its replica).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rimio.core.head import Head

__all__ = [
    "Applied",
    "FinalRead",
    "History",
    "Op",
    "OpKind",
    "Outcome",
    "Version",
    "Violation",
    "check",
]


class OpKind(enum.StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"
    GET = "GET"
    LIST = "LIST"


class Outcome(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"  # the operation certainly did not happen
    UNKNOWN = "unknown"  # it may have (timeout, 503 outcome_unknown, connection lost)


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """What a client learns of a head: its generation, whether it is a
    tombstone, and (for a meta) its etag. Ordered like the head order as far as
    a client can see it (the head hash, the last tie-breaker, is not shown)."""

    generation: int
    deleted: bool = False
    etag: str = ""

    @classmethod
    def of(cls, head: Head) -> Version:
        return cls(head.generation, head.deleted, "" if head.deleted else head.etag)

    def __str__(self) -> str:
        return f"g{self.generation}:" + ("tombstone" if self.deleted else self.etag[:12])


ABSENT = Version(0)
"""What a read of a path never written (404) saw."""


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation.

    * PUT: `sent_etag` is the SHA-256 of the body sent; `version` the
      acknowledged `(generation, etag)` when OK.
    * DELETE: `version` the acknowledged tombstone when OK.
    * GET: `version` what it saw (`ABSENT` for 404, a tombstone for 410, whose
      generation may be 0 when the answer did not say it); `body_etag` the
      SHA-256 of the bytes it returned (200 only).
    * LIST: `path` is the prefix; `listing` the `(path, version)` items it
      returned (tombstones included, so a listing shows what it saw of every
      path under the prefix).
    """

    op_id: int
    kind: OpKind
    path: str
    node: str
    invoked: float
    completed: float
    outcome: Outcome
    status: int = 0
    version: Version | None = None
    sent_etag: str = ""
    body_etag: str = ""
    listing: tuple[tuple[str, Version], ...] = ()
    degraded: bool = False
    client: str = ""

    def __str__(self) -> str:
        what = {OpKind.PUT: f" sent={self.sent_etag[:12]}"}.get(self.kind, "")
        seen = f" -> {self.version}" if self.version is not None else ""
        return (f"#{self.op_id} {self.kind} {self.path!r} via {self.node} "
                f"[{self.invoked:.3f}, {self.completed:.3f}] {self.outcome}"
                f"({self.status}){seen}{what}")


@dataclass(frozen=True, slots=True)
class Applied:
    """A replica applied a head of `path` at `generation` (in log order)."""

    replica: str
    path: str
    generation: int


@dataclass(frozen=True, slots=True)
class FinalRead:
    """A read of `path` after healing: the version seen and the SHA-256 of the
    bytes returned (empty for 404/410)."""

    path: str
    version: Version
    body_etag: str = ""


@dataclass(frozen=True, slots=True)
class History:
    """Everything the checker judges.

    `replicas`: after healing, each replica's current heads (tombstones
    included), slot by slot. `replica_sets`: for each slot that has heads
    anywhere, the replicas that must hold it. `final_reads`: what a read of
    every path returned after healing.
    """

    ops: Sequence[Op]
    replicas: Mapping[str, Mapping[int, Sequence[Head]]] = field(default_factory=dict)
    replica_sets: Mapping[int, Sequence[str]] = field(default_factory=dict)
    final_reads: Sequence[FinalRead] = ()
    applied: Sequence[Applied] = ()


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    path: str
    message: str
    ops: tuple[Op, ...] = ()

    def __str__(self) -> str:
        lines = [f"{self.rule} on {self.path!r}: {self.message}"]
        lines += [f"    {op}" for op in self.ops]
        return "\n".join(lines)


def check(history: History) -> list[Violation]:
    """Every violation in `history`, rule by rule (empty: the history is fine)."""
    return [
        *_lost_writes(history),
        *_stale_reads(history.ops),
        *_generations_backwards(history.applied),
        *_diverging_replicas(history),
        *_phantom_reads(history),
    ]


def _acknowledged(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if op.outcome is Outcome.OK and op.version is not None
            and op.kind in (OpKind.PUT, OpKind.DELETE)]


def _final_heads(history: History) -> dict[str, Head]:
    """The winning head of each path over every replica."""
    best: dict[str, Head] = {}
    for slots in history.replicas.values():
        for heads in slots.values():
            for head in heads:
                known = best.get(head.path)
                if known is None or _key(head) > _key(known):
                    best[head.path] = head
    return best


def _key(head: Head) -> tuple[int, int, str]:
    return (head.generation, 1 if head.deleted else 0, head.sha256)


def _ack_key(op: Op) -> tuple[int, bool]:
    assert op.version is not None
    return (op.version.generation, op.version.deleted)


def _covers(final: Version, acked: Version) -> bool:
    """Whether a final head is at least an acknowledged write by head order.

    At equal generation and kind, two different metas are ordered by their
    head hash, which the client never saw: the final one stands if it is the
    acknowledged one or another write acknowledged at that generation (the
    caller checks that)."""
    return (final.generation, final.deleted) >= (acked.generation, acked.deleted)


def _lost_writes(history: History) -> list[Violation]:
    finals = _final_heads(history)
    by_path: dict[str, list[Op]] = defaultdict(list)
    for op in _acknowledged(history.ops):
        by_path[op.path].append(op)
    out: list[Violation] = []
    for path, acked in sorted(by_path.items()):
        head = finals.get(path)
        final = Version.of(head) if head is not None else None
        top = max(acked, key=_ack_key)
        assert top.version is not None
        if final is None:
            out.append(Violation("lost_write", path, f"acknowledged {top.version} but no "
                                 "replica holds the path after healing", (top,)))
            continue
        if not _covers(final, top.version):
            out.append(Violation("lost_write", path, f"final head {final} is older than the "
                                 f"acknowledged {top.version}", (top,)))
            continue
        tie = (final.generation, final.deleted) == (top.version.generation, top.version.deleted)
        if tie and not final.deleted and final.etag not in _tie_winners(history, path, final):
            out.append(Violation("lost_write", path, f"final head {final} replaced the "
                                 f"acknowledged {top.version} at the same generation", (top,)))
    return out


def _tie_winners(history: History, path: str, final: Version) -> set[str]:
    """The etags a final meta may carry when it ties the top acknowledged write:
    a write acknowledged at that generation, or a PUT of unknown outcome."""
    winners: set[str] = set()
    for op in history.ops:
        if op.path != path or op.kind is not OpKind.PUT:
            continue
        if op.outcome is Outcome.UNKNOWN:
            winners.add(op.sent_etag)
        elif (op.outcome is Outcome.OK and op.version is not None
              and op.version.generation == final.generation):
            winners.add(op.version.etag)
    return winners


def _read_versions(op: Op) -> list[tuple[str, Version]]:
    """The (path, version) pairs a successful read saw."""
    if op.outcome is not Outcome.OK or op.degraded:
        return []
    if op.kind is OpKind.GET and op.version is not None:
        return [(op.path, op.version)]
    return list(op.listing) if op.kind is OpKind.LIST else []


def _stale_reads(ops: Sequence[Op]) -> list[Violation]:
    acked = sorted(_acknowledged(ops), key=lambda op: op.completed)
    out: list[Violation] = []
    for read in ops:
        if read.kind not in (OpKind.GET, OpKind.LIST):
            continue
        if read.outcome is not Outcome.OK or read.degraded:
            continue
        seen = dict(_read_versions(read))
        for write in acked:
            if write.completed >= read.invoked:
                break
            if read.kind is OpKind.GET and write.path != read.path:
                continue
            if read.kind is OpKind.LIST and not write.path.startswith(read.path):
                continue
            assert write.version is not None
            got = seen.get(write.path, ABSENT)
            if got.deleted and got.generation == 0:
                # A 410 that did not say its generation: fine if a delete that
                # may be at least as new as the write had begun by then.
                if _some_delete_covers(ops, write, read):
                    continue
            elif got.generation >= write.version.generation:
                continue
            out.append(Violation("stale_read", write.path,
                                 f"{read.kind} saw {got}, after {write.version} was "
                                 "acknowledged", (write, read)))
    return out


def _some_delete_covers(ops: Sequence[Op], write: Op, read: Op) -> bool:
    """Whether a DELETE of the write's path, begun before `read` ended, may have
    left a tombstone at least as new as `write` (acknowledged at or above its
    generation, or of unknown outcome)."""
    assert write.version is not None
    for op in ops:
        if op.kind is not OpKind.DELETE or op.path != write.path or op.invoked >= read.completed:
            continue
        if op.outcome is Outcome.UNKNOWN:
            return True
        if (op.outcome is Outcome.OK and op.version is not None
                and op.version.generation >= write.version.generation):
            return True
    return False


def _generations_backwards(applied: Sequence[Applied]) -> list[Violation]:
    last: dict[tuple[str, str], int] = {}
    out: list[Violation] = []
    for i, entry in enumerate(applied):
        key = (entry.replica, entry.path)
        before = last.get(key)
        if before is not None and entry.generation < before:
            out.append(Violation("generation_backwards", entry.path,
                                 f"replica {entry.replica} applied generation {entry.generation} "
                                 f"after {before} (log entry {i})"))
        last[key] = max(entry.generation, before or 0)
    return out


def _diverging_replicas(history: History) -> list[Violation]:
    out: list[Violation] = []
    for slot, members in sorted(history.replica_sets.items()):
        held = {r: {h.path: h for h in history.replicas.get(r, {}).get(slot, ())}
                for r in members}
        for path in sorted({p for heads in held.values() for p in heads}):
            if len({heads[path].sha256 if path in heads else None
                    for heads in held.values()}) <= 1:
                continue
            shown = ", ".join(f"{r}={Version.of(heads[path]) if path in heads else 'none'}"
                              for r, heads in held.items())
            out.append(Violation("replicas_diverge", path,
                                 f"slot {slot} replicas disagree after healing: {shown}"))
    return out


def _phantom_reads(history: History) -> list[Violation]:
    attempted: dict[str, set[str]] = defaultdict(set)
    for op in history.ops:
        if op.kind is OpKind.PUT and op.sent_etag:
            attempted[op.path].add(op.sent_etag)
    out: list[Violation] = []
    for op in history.ops:
        if op.kind is not OpKind.GET or not op.body_etag:
            continue
        if op.body_etag not in attempted[op.path]:
            out.append(Violation("phantom_read", op.path, f"returned bytes with SHA-256 "
                                 f"{op.body_etag[:12]} that no PUT of this path sent", (op,)))
        elif op.version is not None and op.version.etag not in ("", op.body_etag):
            out.append(Violation("phantom_read", op.path, f"returned bytes with SHA-256 "
                                 f"{op.body_etag[:12]} as etag {op.version.etag[:12]}", (op,)))
    for read in history.final_reads:
        if read.body_etag and read.body_etag not in attempted[read.path]:
            out.append(Violation("phantom_read", read.path, f"after healing, read bytes with "
                                 f"SHA-256 {read.body_etag[:12]} that no PUT of this path sent"))
        if read.body_etag and read.version.etag and read.body_etag != read.version.etag:
            out.append(Violation("phantom_read", read.path, f"after healing, bytes with SHA-256 "
                                 f"{read.body_etag[:12]} were served as etag "
                                 f"{read.version.etag[:12]}"))
    return out
