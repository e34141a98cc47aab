"""`LocalReplica`: this node's own replica of its slots, as a coordinator sees
it (`rimio.core.replica.Replica`, RFC 0011 §5), over the `LocalStore` directly.

Every call goes through the store's one write sequence (storage/writes.py)
or its reads; nothing here touches a file. Offers are checked for
consistency (`rimio.core.offers`) before anything is stored, here as on the
internal API, so the local replica and a remote one refuse the same things.
"""

from __future__ import annotations

import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
    Sequence,
)
from typing import Any

from rimio.core.digest import EMPTY, FANOUT, HeadKey
from rimio.core.head import Head
from rimio.core.offers import check_offer, check_path
from rimio.core.replica import ApplyAnswer, HeadAnswer, PartInfo, ReplicaUnavailable
from rimio.storage.store import LocalStore


class LocalReplica:
    """The replica of this node's store, named `node_id`. `clock` stamps the
    rows it writes (wall-clock seconds). `serving`, when given, says whether
    this replica may answer reads (heads, parts, listings): not while its
    node re-syncs after a long absence (RFC 0015 §4); writes are taken."""

    def __init__(self, store: LocalStore, node_id: str, *,
                 clock: Callable[[], float] = time.time,
                 serving: Callable[[], bool] | None = None) -> None:
        self._store = store
        self._node_id = node_id
        self._clock = clock
        self._serving = serving

    def _check_serving(self) -> None:
        if self._serving is not None and not self._serving():
            raise ReplicaUnavailable(f"{self._node_id} is re-syncing after a long absence")

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def total_slots(self) -> int:
        return self._store.total_slots

    @property
    def part_size(self) -> int:
        return self._store.part_size

    async def get_head(self, slot: int, path: str, write_id: str | None = None) -> HeadAnswer:
        check_path(path, slot, self.total_slots)
        self._check_serving()
        head, result = await self._store.head_and_result(slot, path, write_id)
        return HeadAnswer(head, result)

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes]) -> PartInfo:
        check_path(path, slot, self.total_slots)
        record = await self._store.put_part(slot, path, generation, index, chunks,
                                            clock=self._clock)
        return PartInfo(record.index, record.sha256, record.size_bytes)

    async def apply_head(self, head: Head, parts: Sequence[PartInfo], inline: bytes | None,
                         write_result: dict[str, Any] | None,
                         layout_version: int) -> ApplyAnswer:
        # The layout version matters to a remote replica (whose layout may be
        # newer); this node's coordinator uses this node's own layout.
        check_offer(head, parts, inline, total_slots=self.total_slots)
        applied, current = await self._store.apply_head(head, parts, inline, write_result,
                                                        clock=self._clock)
        return ApplyAnswer(applied, current)

    async def abort(self, slot: int, path: str, generation: int) -> None:
        check_path(path, slot, self.total_slots)
        await self._store.abort_generation(slot, path, generation)

    async def restore_part(self, head: Head, index: int,
                           chunks: AsyncIterable[bytes]) -> PartInfo:
        return await self.restore_part_of(head.slot_id, head.path, head.generation,
                                          head.sha256, index, chunks)

    async def restore_part_of(self, slot: int, path: str, generation: int, head_sha256: str,
                              index: int, chunks: AsyncIterable[bytes]) -> PartInfo:
        """`restore_part` of the head named by its path, generation and hash
        (what a remote coordinator sends)."""
        check_path(path, slot, self.total_slots)
        record = await self._store.restore_part(slot, path, generation, head_sha256, index,
                                                chunks)
        return PartInfo(record.index, record.sha256, record.size_bytes)

    def read_part(self, head: Head, index: int, start: int, end: int) -> AsyncIterator[bytes]:
        self._check_serving()
        return self._store.read_part(head.slot_id, head.path, head.generation, head.sha256,
                                     index, start, end)

    def read_part_of(self, slot: int, path: str, generation: int, head_sha256: str,
                     index: int, start: int, end: int | None
                     ) -> AsyncGenerator[bytes, None]:
        """`read_part` of the head named by its path, generation and hash (what
        a remote coordinator sends); `end` None: to the end of the part."""
        return self._store.read_part(slot, path, generation, head_sha256, index, start, end)

    async def list_heads(self, slot: int | None, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        self._check_serving()
        if slot is None:
            return await self._store.list_heads(prefix, after, limit, include_deleted=True)
        return await self._store.slot_heads(slot, prefix, after, limit)

    async def digest_tops(self) -> dict[int, bytes]:
        return await self._store.slot_tops()

    async def digest_groups(self, slot: int) -> tuple[bytes, ...]:
        return (await self._store.slot_digest(slot)).groups()

    async def digest_slotlets(self, slot: int, groups: Sequence[int]) -> dict[int, bytes]:
        digest = await self._store.slot_digest(slot)
        return {i: digest.slotlets[i] for g in groups for i in range(g * FANOUT, (g + 1) * FANOUT)
                if digest.slotlets[i] != EMPTY}

    async def slotlet_heads(self, slot: int, slotlets: Sequence[int]) -> dict[str, HeadKey]:
        return await self._store.heads_in_slotlets(slot, slotlets)

    async def heads_held(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        return await self._store.heads_held(slot, keys)

    async def purge_tombstones(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        return await self._store.forget_heads(slot, keys, tombstones_only=True)

    async def old_tombstones(self, slot: int, before: float, limit: int) -> dict[str, HeadKey]:
        """Tombstones of `slot` installed here before `before` (wall seconds)."""
        return await self._store.old_tombstones(slot, before, limit)

    async def forget_stale(self, slot: int, keys: Mapping[str, HeadKey],
                           installed_before: float) -> set[str]:
        """Forget heads no other replica holds after a long absence (RFC 0015 §4)."""
        return await self._store.forget_heads(slot, keys, tombstones_only=False,
                                              installed_before=installed_before)

    async def slots_with_data(self) -> set[int]:
        """The slots this node has rows of (what the mover sweeps)."""
        return await self._store.slots_with_data()

    async def drop_slot(self, slot: int) -> None:
        """Remove every head and part of `slot` here (the mover, once it moved away)."""
        await self._store.drop_slot(slot)
