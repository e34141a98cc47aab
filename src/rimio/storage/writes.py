"""The local write sequence: how a write becomes a head on this node's disk.

Every write (a small object in hand, a streamed one, a deletion) takes the
same steps, in this order:

1. admit: write-id replay check, precondition check, then a pending marker
   that reserves the generation (before any file exists, so start-up can
   find and remove what an interrupted write left behind);
2. write the part files and make them durable;
3. commit the head atomically; the transaction repeats the checks of step 1;
4. unless the head was applied: remove the files first, then drop the
   marker (a crash in between still finds the marker).

Compression (storage/compression.py) happens inside step 2, part by part,
and changes nothing in the order: a compressed part is written, fsynced and
renamed like any other.

A write that creates no file (a tombstone, or an object of at most the
store's inline limit, whose bytes go in its part row) needs neither the
marker nor step 4: steps 1 and 3 are one transaction (checks, generation,
head, part row with the bytes, write result), so it costs one WAL commit.

A replica's write (RFC 0011 §5) takes the same steps with the generation
its coordinator chose, spread over requests: step 1 is `join` (no checks:
the coordinator made them, and the head order decides at the end), once per
part upload, all uploads of one generation under one pending marker; step 2
writes that one part; step 3 is `apply`, which makes the offered head current
only if it beats the current one by the head order, after checking that every
part file it names is here with its size; step 4, for a head that did not
win (or an abort), removes the uploaded files first and the marker after.

`LocalWrite` holds those steps for one write. Each blocks and runs in a
worker thread; the steps that take `meta` need the slot held by the caller.
`LocalStore.write` decides how they are spread over threads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from rimio.core.head import Head, beats
from rimio.core.paths import disk_segments
from rimio.core.replica import PartInfo, PartMissing
from rimio.core.writes import CommitOutcome, Precondition, WriteCheck, WriteReport
from rimio.storage.compression import NO_COMPRESSION, CompressionPolicy
from rimio.storage.meta import PendingWrite, SlotMeta
from rimio.storage.parts import Chunks, ObjectWriter, PartRecord, remove_files


class Tombstone(Enum):
    """The content of a deletion."""

    TOMBSTONE = "tombstone"


TOMBSTONE = Tombstone.TOMBSTONE

# What a write stores: the whole object in hand, batches of a streamed
# object (in order, each written as it comes; a batch is one buffer or a
# sequence of received chunks, written without joining them), or a deletion.
Content = bytes | AsyncIterable[Chunks] | Tombstone

ResultFor = Callable[[Head], dict[str, Any]]


class LocalWrite:
    """One write of one path into one slot; see the module docstring for the steps."""

    def __init__(
        self,
        slot: int,
        path: str,
        slot_dir: Path,
        part_size: int,
        *,
        tombstone: bool,
        write_id: str,
        precondition: Precondition | None,
        result_for: ResultFor,
        generation: int | None = None,
        hash_object: bool = True,
        in_row: bool = False,
        compression: CompressionPolicy = NO_COMPRESSION,
        first_index: int = 0,
    ) -> None:
        self.slot = slot
        # The index of the first part this write writes (a replica's part upload).
        self._first_index = first_index
        self.path = path
        self._slot_dir = slot_dir
        self._part_size = part_size
        self._tombstone = tombstone
        self._write_id = write_id
        self._precondition = precondition
        self._result_for = result_for
        # None: the next generation of the path here. Given: chosen elsewhere
        # (a replica applying its coordinator's write).
        self._generation = generation
        # False: the caller hashes the object itself (beside the part write)
        # and passes the etag to `commit`.
        self._hash_object = hash_object
        # True: no files (a tombstone, or bytes that live in the part row).
        self._in_row = in_row or tombstone
        # Whether part files are compressed (decided part by part).
        self._compression = compression
        self._pending: PendingWrite | None = None
        self._writer: ObjectWriter | None = None
        # The head this write made current and its parts, once committed
        # (None before, or when it applied nothing): what the read cache keeps.
        self.applied: tuple[Head, tuple[PartRecord, ...]] | None = None

    @property
    def generation(self) -> int | None:
        """The generation reserved by `admit` (None before)."""
        return None if self._pending is None else self._pending.generation

    # -- the steps --------------------------------------------------------------

    def admit(self, meta: SlotMeta, now: float) -> WriteReport | None:
        """Check replay and precondition; if the write may go ahead, reserve
        its generation with a pending marker and return None."""
        check = meta.check_write(self.path, self._write_id)
        refusal = check.refusal(self._precondition)
        if refusal is not None:
            return WriteReport.refused(refusal, check)
        blob_dir = "/".join(["blobs", *disk_segments(self.path)])
        self._pending = meta.begin_pending(self.path, blob_dir, now, self._generation)
        if not self._tombstone:
            self._writer = ObjectWriter(self._slot_dir, self._pending.gen_dir, self._part_size,
                                        hash_object=self._hash_object,
                                        compression=self._compression)
        return None

    def write(self, data: Chunks) -> None:
        self.writer.write(data)

    @property
    def writer(self) -> ObjectWriter:
        """The part writer (after `admit`), for callers that pipeline its steps."""
        assert self._writer is not None, "no part writer before admit() or for a tombstone"
        return self._writer

    def seal(self) -> tuple[list[PartRecord], str, int]:
        """Make the part files durable; (parts, etag, size). The etag is empty
        when the caller hashes the object itself."""
        if self._writer is None:
            return [], "", 0
        return self._writer.finish()

    def commit(self, meta: SlotMeta, parts: list[PartRecord], etag: str, size: int,
               now: float) -> WriteReport:
        """Commit the head of the sealed parts, re-checking replay and precondition."""
        assert self._pending is not None, "commit() before admit()"
        head = self._head(self._pending.generation, parts, etag, size, now)
        result = self._result_for(head)
        outcome, check = meta.commit(head, parts, now=now, pending_id=self._pending.id,
                                     precondition=self._precondition, result=result)
        if outcome is CommitOutcome.APPLIED:
            self.applied = (head, tuple(parts))
        return self._report(outcome, check, result)

    def commit_in_row(self, meta: SlotMeta, data: bytes, now: float) -> WriteReport:
        """The whole write of content without files, in one transaction: the
        checks, the generation, the head, the part rows holding the bytes
        (none for a tombstone or an empty object) and the write result."""
        parts = [] if self._tombstone else inline_parts(data, self._part_size)
        etag = "" if self._tombstone else hashlib.sha256(data).hexdigest()

        built: list[Head] = []

        def build(generation: int) -> tuple[Head, dict[str, Any]]:
            head = self._head(generation, parts, etag, len(data), now)
            built.append(head)
            return head, self._result_for(head)

        outcome, check, result = meta.commit_new(
            self.path, self._write_id, build, parts, now=now, generation=self._generation,
            precondition=self._precondition)
        if outcome is CommitOutcome.APPLIED and built:
            self.applied = (built[-1], tuple(parts))
        return self._report(outcome, check, result)

    @staticmethod
    def _report(outcome: CommitOutcome, check: WriteCheck,
                result: dict[str, Any] | None) -> WriteReport:
        if outcome in (CommitOutcome.REPLAY, CommitOutcome.PRECONDITION_FAILED):
            return WriteReport.refused(outcome, check)
        # SUPERSEDED: written, but a better head already won; the answer is ours.
        return WriteReport(outcome, result)

    def remove_files(self) -> None:
        """Remove every file this write created (the first half of an abort)."""
        if self._writer is not None:
            self._writer.abort()

    def drop_pending(self, meta: SlotMeta) -> None:
        """Drop the pending marker (the second half of an abort, after `remove_files`)."""
        if self._pending is not None:
            meta.drop_pending(self._pending.id)

    # -- a replica's write: one part per request, then the head ----------------

    def join(self, meta: SlotMeta, now: float) -> None:
        """Step 1 of one part upload: join (or begin) the pending marker of
        this write's generation, before any file exists."""
        assert self._generation is not None, "a replica's write has its generation"
        blob_dir = "/".join(["blobs", *disk_segments(self.path)])
        self._pending = meta.join_pending(self.path, blob_dir, now, self._generation)
        self._writer = ObjectWriter(self._slot_dir, self._pending.gen_dir, self._part_size,
                                    hash_object=False, compression=self._compression,
                                    first_index=self._first_index)

    def record_part(self, meta: SlotMeta, part: PartRecord, now: float) -> bool:
        """After `seal`: remember how the uploaded part is stored, until a
        head names it. False when the write was aborted meanwhile."""
        assert self._pending is not None, "record_part() before join()"
        return meta.record_upload(self.path, self._pending.generation, part, now)

    def apply(self, meta: SlotMeta, head: Head, offered: Sequence[PartInfo],
              inline: bytes | None, result: dict[str, Any] | None, now: float, *,
              busy: bool) -> tuple[bool, Head | None]:
        """Steps 3 and 4 of a replica's write, holding the slot: (applied,
        current head after). `busy`: uploads of this generation are in flight
        (their marker stays)."""
        current = meta.current_head(head.path)
        keys = [(p.index, p.sha256) for p in offered]
        if current is not None and current.sha256 == head.sha256:
            # Already here (a retry): nothing changes but a missing write result,
            # and inline bytes a verified read found damaged (a repair brings
            # them again; check_offer checked them against the etag).
            if inline is not None:
                for part in inline_parts(inline, head.part_size):
                    meta.set_inline(head.path, head.generation, head.sha256, part.index,
                                    part.sha256, part.data)
            meta.settle_uploads(head, keys, None, result, now, busy=busy)
            return True, current
        if not beats(head, current):
            # Lost by the head order: its uploaded files first, then its rows
            # and the marker (a crash in between leaves the marker for start-up).
            remove_files(self._slot_dir, meta.upload_files(head.path, head.generation, keys))
            meta.settle_uploads(head, keys, None, result, now, busy=busy)
            return False, current
        if head.deleted:
            parts: list[PartRecord] = []
        elif inline is not None:
            parts = inline_parts(inline, head.part_size) if inline else []
        else:
            parts = [self._present(meta, head, p) for p in sorted(offered, key=lambda p: p.index)]
        meta.settle_uploads(head, keys, parts, result, now, busy=busy)
        return True, head

    def _present(self, meta: SlotMeta, head: Head, part: PartInfo) -> PartRecord:
        """The record of an offered part whose file is here, whole; else PartMissing."""
        record = meta.part_file(head.path, head.generation, part.index, part.sha256)
        if record is None or record.size_bytes != part.size_bytes or record.local_path is None:
            raise PartMissing(f"{head.path}: part {part.index} of generation "
                              f"{head.generation} was not uploaded here")
        try:
            whole = os.stat(self._slot_dir / record.local_path).st_size == record.file_bytes
        except FileNotFoundError:
            whole = False
        if not whole:
            raise PartMissing(f"{head.path}: the file of part {part.index} of generation "
                              f"{head.generation} is missing or not whole")
        return record

    # -- the whole sequence in one call -----------------------------------------

    def run(self, meta: SlotMeta, data: bytes | None, now: float) -> WriteReport:
        """Every step in one worker-thread call, holding the slot throughout:
        for content that is already in hand (`data`) or a tombstone (None)."""
        if self._in_row:
            return self.commit_in_row(meta, data or b"", now)
        early = self.admit(meta, now)
        if early is not None:
            return early
        try:
            if data:
                self.write(data)
            parts, etag, size = self.seal()
            report = self.commit(meta, parts, etag, size, now)
        except BaseException:
            self.remove_files()
            self.drop_pending(meta)
            raise
        if report.outcome is not CommitOutcome.APPLIED:
            self.remove_files()
            self.drop_pending(meta)
        return report

    def _head(self, generation: int, parts: list[PartRecord], etag: str, size: int,
              now: float) -> Head:
        if self._tombstone:
            return Head(kind="tombstone", path=self.path, slot_id=self.slot,
                        generation=generation, write_id=self._write_id, timestamp=now)
        return Head(kind="meta", path=self.path, slot_id=self.slot,
                    generation=generation, write_id=self._write_id,
                    size_bytes=size, etag=etag, part_size=self._part_size,
                    part_count=len(parts), timestamp=now)


def inline_parts(data: bytes, part_size: int) -> list[PartRecord]:
    """`data` cut into parts like a part file writer would, held in memory:
    the same indexes, sizes and hashes, so the head is the same either way."""
    return [PartRecord(i, hashlib.sha256(chunk).hexdigest(), len(chunk), None, chunk)
            for i, chunk in enumerate(data[o:o + part_size]
                                      for o in range(0, len(data), part_size))]
