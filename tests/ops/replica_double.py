"""An in-memory replica that keeps the `Replica` protocol (RFC 0011 §5) faithfully,
with switchable failures, for testing the coordinator's quorum logic.

It applies a head only if it beats its own by the head order, checks that
every part of a head is there with its size and hash (or the inline bytes),
records a write result once per write id, removes a generation's uploads when
its head loses, and keeps the parts of every committed head (as a store keeps
them until GC). Failures: `down` (every call raises ReplicaUnavailable),
`delay` (every call sleeps first), `fail_after_parts` (put_part fails after
that many parts were stored), `lose_part(path, index)` (read_part raises
PartMissing), `apply_fails` / `apply_then_fail` (the apply is refused / is
done but answered with a failure), `corrupt_parts` (stores other bytes than
it was sent), `layout_version` (an apply sent under an older one raises
StaleLayout).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

import trio

from rimio.core.head import Head, beats
from rimio.core.replica import (
    ApplyAnswer,
    HeadAnswer,
    PartInfo,
    PartMissing,
    ReplicaUnavailable,
    StaleLayout,
)

READ_CHUNK = 7  # small, odd: reads cross chunk boundaries in tests


class ReplicaDouble:
    def __init__(self, node_id: str, *, layout_version: int = 1) -> None:
        self._node_id = node_id
        self.layout_version = layout_version
        self.heads: dict[str, Head] = {}
        # (path, head sha) → the parts' bytes of every committed head
        self.contents: dict[tuple[str, str], list[bytes]] = {}
        # (path, generation) → (index, sha256) → bytes: uploads are told apart by
        # their hash, so two writers that chose the same generation do not mix.
        self.pending: dict[tuple[str, int], dict[tuple[int, str], bytes]] = {}
        self.results: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = False
        self.delay = 0.0
        self.fail_after_parts: int | None = None
        self.apply_fails = False
        self.apply_then_fail = False
        self.corrupt_parts = False
        self.lost_parts: set[tuple[str, int]] = set()
        self.parts_stored = 0
        self.calls: list[str] = []

    @property
    def node_id(self) -> str:
        return self._node_id

    def lose_part(self, path: str, index: int) -> None:
        self.lost_parts.add((path, index))

    async def _enter(self, call: str) -> None:
        self.calls.append(call)
        if self.delay:
            await trio.sleep(self.delay)
        if self.down:
            raise ReplicaUnavailable(f"{self._node_id} is down")
        await trio.lowlevel.checkpoint()

    def content_of(self, path: str) -> bytes | None:
        """The bytes of the current head of `path` (None: none, or a tombstone)."""
        head = self.heads.get(path)
        if head is None or head.deleted:
            return None
        return b"".join(self.contents[(path, head.sha256)])

    # -- the protocol ---------------------------------------------------------------

    async def get_head(self, slot: int, path: str, write_id: str | None = None) -> HeadAnswer:
        await self._enter("get_head")
        result = self.results.get((path, write_id)) if write_id else None
        return HeadAnswer(self.heads.get(path), result)

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes]) -> PartInfo:
        await self._enter("put_part")
        if self.fail_after_parts is not None and self.parts_stored >= self.fail_after_parts:
            raise ReplicaUnavailable(f"{self._node_id} failed during a part upload")
        data = bytearray()
        async for chunk in chunks:
            data += chunk
            if self.delay:
                await trio.sleep(self.delay)
            if self.down:
                raise ReplicaUnavailable(f"{self._node_id} went down during a part upload")
        stored = bytes(data)
        if self.corrupt_parts and stored:
            stored = bytes([stored[0] ^ 1]) + stored[1:]
        sha256 = hashlib.sha256(stored).hexdigest()
        self.pending.setdefault((path, generation), {})[(index, sha256)] = stored
        self.parts_stored += 1
        return PartInfo(index, sha256, len(stored))

    async def apply_head(self, head: Head, parts: Sequence[PartInfo], inline: bytes | None,
                         write_result: dict[str, Any] | None,
                         layout_version: int) -> ApplyAnswer:
        await self._enter("apply_head")
        if layout_version < self.layout_version:
            raise StaleLayout("the layout moved on", self.layout_version)
        if self.apply_fails:
            raise ReplicaUnavailable(f"{self._node_id} failed to apply")
        path = head.path
        if write_result is not None and head.write_id:
            self.results.setdefault((path, head.write_id), write_result)
        current = self.heads.get(path)
        if current is not None and current.sha256 == head.sha256:
            return ApplyAnswer(True, current)
        uploads = self.pending.get((path, head.generation), {})
        offered = {(p.index, p.sha256): uploads.get((p.index, p.sha256)) for p in parts}
        for key in offered:
            uploads.pop(key, None)
        if not uploads:
            self.pending.pop((path, head.generation), None)
        if not beats(head, current):
            return ApplyAnswer(False, current)
        content: list[bytes] = []
        if not head.deleted:
            if inline is not None:
                if len(inline) != head.size_bytes:
                    raise PartMissing("inline bytes of the wrong size")
                content = [inline[o:o + head.part_size]
                           for o in range(0, len(inline), head.part_size)]
            else:
                if len(parts) != head.part_count:
                    raise PartMissing("the head names other parts than were sent")
                for info in sorted(parts, key=lambda p: p.index):
                    data = offered[(info.index, info.sha256)]
                    if data is None or len(data) != info.size_bytes:
                        self.pending.setdefault((path, head.generation), {}).update(
                            {k: v for k, v in offered.items() if v is not None})
                        raise PartMissing(f"part {info.index} is not here")
                    content.append(data)
        self.heads[path] = head
        self.contents[(path, head.sha256)] = content
        if self.apply_then_fail:
            raise ReplicaUnavailable(f"{self._node_id} applied, then the answer was lost")
        return ApplyAnswer(True, head)

    async def abort(self, slot: int, path: str, generation: int) -> None:
        await self._enter("abort")
        self.pending.pop((path, generation), None)

    async def read_part(self, head: Head, index: int, start: int,
                        end: int) -> AsyncIterator[bytes]:
        await self._enter("read_part")
        content = self.contents.get((head.path, head.sha256))
        if content is None or (head.path, index) in self.lost_parts or index >= len(content):
            raise PartMissing(f"part {index} of {head.path} is not on {self._node_id}")
        data = content[index][start:end]
        for offset in range(0, len(data), READ_CHUNK):
            yield data[offset:offset + READ_CHUNK]

    async def list_heads(self, slot: int | None, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        await self._enter("list_heads")
        found = sorted((h for h in self.heads.values()
                        if (slot is None or h.slot_id == slot) and h.path.startswith(prefix)
                        and (after is None or h.path > after)), key=lambda h: h.path)
        return found[:limit]
