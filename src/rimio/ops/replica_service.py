"""`ReplicaService`: this node's replica, as the internal API serves it to
coordinators on other nodes (RFC 0011 §5).

It wraps the node's `LocalReplica` with what a request from the network needs
before it reaches the store: the layout version check (a hook the node
supplies; `409 stale_layout` when the replica's layout is newer), the bounds
of an offer's body, and the decoding of the msgpack offer. The API layer
calls this, never the store.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable

from rimio.core import digest_wire
from rimio.core.errors import BadRequest, Resyncing
from rimio.core.head import Head
from rimio.core.offers import check_path, part_count_for
from rimio.core.replica import ApplyAnswer, HeadAnswer, PartInfo, StaleLayout
from rimio.core.replica_wire import decode_offer
from rimio.ops.first_chunk import peel
from rimio.storage.replica import LocalReplica

# What the node answers a request's layout version with: None when the
# request may go ahead, else this replica's (newer) layout version.
LayoutVersionCheck = Callable[[int], int | None]
# Room in an offer's body beside its inline bytes and part rows (the head,
# the write result, msgpack framing).
_OFFER_OVERHEAD = 16 * 1024
_PART_ROW_BYTES = 96


def accept_any_layout(version: int) -> int | None:
    """The check of a node without a layout yet: every version is current."""
    return None


class ReplicaService:
    """`max_object_bytes` bounds how many parts an offer may name;
    `inline_max_bytes` how many bytes it may carry inline."""

    def __init__(self, local: LocalReplica, *, max_object_bytes: int, inline_max_bytes: int,
                 layout_version_check: LayoutVersionCheck = accept_any_layout,
                 resyncing: Callable[[], bool] = lambda: False) -> None:
        self._local = local
        self._check_layout = layout_version_check
        self._resyncing = resyncing
        self.part_size = local.part_size
        self.total_slots = local.total_slots
        self.max_parts = max(1, part_count_for(max_object_bytes, self.part_size))
        self.max_inline = inline_max_bytes
        self.max_offer_bytes = (inline_max_bytes + self.max_parts * _PART_ROW_BYTES
                                + _OFFER_OVERHEAD)

    def check_layout(self, version: int) -> None:
        """Raise StaleLayout when this replica's layout is newer than `version`."""
        mine = self._check_layout(version)
        if mine is not None:
            raise StaleLayout(f"this replica's layout is at version {mine}, the request's "
                              f"at {version}", mine)

    def check_serving(self, asker_resyncing: bool) -> None:
        """Raise Resyncing when this node re-syncs after a long absence (RFC
        0015 §4): its heads may be ones the others purged the tombstones of,
        so it answers no read — but for a node that re-syncs too (a cluster
        that was off as a whole: they pull from one another)."""
        if not asker_resyncing and self._resyncing():
            raise Resyncing("this node is re-syncing after a long absence")

    async def get_head(self, slot: int, path: str, write_id: str | None) -> HeadAnswer:
        return await self._local.get_head(slot, path, write_id)

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes]) -> PartInfo:
        check_path(path, slot, self.total_slots)
        return await self._local.put_part(slot, path, generation, index, chunks)

    async def apply(self, slot: int, body: bytes, layout_version: int) -> ApplyAnswer:
        """Apply the msgpack offer `body` sent to `slot` (BadRequest when it is
        malformed or its head is not of that slot)."""
        offer = decode_offer(body, max_parts=self.max_parts, max_inline=self.max_inline)
        check_path(offer.head.path, slot, self.total_slots)
        if offer.head.slot_id != slot:
            raise BadRequest(f"the head is of slot {offer.head.slot_id}, not {slot}")
        return await self._local.apply_head(offer.head, offer.parts, offer.inline,
                                            offer.write_result, layout_version)

    async def abort(self, slot: int, path: str, generation: int) -> None:
        await self._local.abort(slot, path, generation)

    async def restore_part(self, slot: int, path: str, generation: int, head_sha256: str,
                           index: int, chunks: AsyncIterable[bytes]) -> PartInfo:
        """Put back one part of a head this replica holds (RFC 0017); the
        bytes are checked against its own part row before they are installed."""
        check_path(path, slot, self.total_slots)
        record = await self._local.restore_part_of(slot, path, generation, head_sha256, index,
                                                   chunks)
        return record

    async def open_part(self, slot: int, path: str, generation: int, head_sha256: str,
                        index: int, start: int, end: int | None
                        ) -> tuple[bytes, AsyncGenerator[bytes, None]]:
        """The first chunk of a part range and the rest: errors (a missing
        part) surface here, before an answer starts."""
        check_path(path, slot, self.total_slots)
        chunks = self._local.read_part_of(slot, path, generation, head_sha256, index,
                                          start, end)
        return await peel(chunks), chunks

    async def digest(self, body: bytes, *, asker_resyncing: bool = False) -> bytes:
        """The msgpack answer to the msgpack digest question `body` (RFC 0014
        §3); BadRequest when it does not parse. A re-syncing node answers
        what it holds ("held", "purge") but compares nothing (`check_serving`)."""
        q = digest_wire.decode_question(body, total_slots=self.total_slots)
        if q.kind not in ("held", "purge"):
            self.check_serving(asker_resyncing)
        local = self._local
        if q.kind == "tops":
            return digest_wire.encode_tops(await local.digest_tops())
        if q.kind == "groups":
            return digest_wire.encode_groups(await local.digest_groups(q.slot))
        if q.kind == "slotlets":
            return digest_wire.encode_slotlets(await local.digest_slotlets(q.slot, q.indexes))
        if q.kind == "heads":
            return digest_wire.encode_heads(await local.slotlet_heads(q.slot, q.indexes))
        named = dict(q.named)
        if q.kind == "held":
            return digest_wire.encode_paths(await local.heads_held(q.slot, named))
        return digest_wire.encode_paths(await local.purge_tombstones(q.slot, named))

    async def list_heads(self, slot: int, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        if not 0 <= slot < self.total_slots:
            raise BadRequest(f"slot {slot} is out of range")
        return await self._local.list_heads(slot, prefix, after, limit)
