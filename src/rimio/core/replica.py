"""The replica protocol: what a coordinator asks of each replica of a slot
(RFC 0011 §5).

One protocol serves every replica, this node's own included: the local one
(`rimio.storage.replica.LocalReplica`) calls the store directly, a remote one
(`rimio.cluster.replicas.HttpReplica`) speaks the signed internal API. Every
operation is idempotent on retry, so a coordinator may repeat any of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rimio.core.digest import HeadKey
from rimio.core.errors import RimioError
from rimio.core.head import Head

# Carried by every internal request of a node that re-syncs after a long
# absence (RFC 0015 §4): a node re-syncing too answers it all the same.
RESYNCING_HEADER = "X-Rimio-Resyncing"


@dataclass(frozen=True, slots=True)
class HeadAnswer:
    """A replica's current head of a path (None: never written there) and the
    result it recorded for the write id asked about (None: none)."""

    head: Head | None
    write_result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A part a replica holds for a pending write: its index, the SHA-256 of
    its (uncompressed) bytes and their count."""

    index: int
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ApplyAnswer:
    """`applied`: the head offered is now (or already was) the replica's
    current head. `current`: the replica's current head after the call."""

    applied: bool
    current: Head | None


class ReplicaUnavailable(RimioError):
    """The replica could not be asked: unreachable, timed out, or it failed."""

    code = "replica_unavailable"


class StaleLayout(RimioError):
    """The replica's layout is newer than the one the request was sent under."""

    code = "stale_layout"

    def __init__(self, message: str, replica_version: int) -> None:
        super().__init__(message)
        self.replica_version = replica_version


class PartMissing(RimioError):
    """A part asked for is not on the replica (or not whole)."""

    code = "part_missing"


class RestoreUnsupported(ReplicaUnavailable):
    """The replica does not know the single-part restore (a node from before
    RFC 0017): the caller brings it the whole object instead."""

    code = "restore_unsupported"


class Replica(Protocol):
    """One replica of a slot, as a coordinator sees it."""

    @property
    def node_id(self) -> str: ...

    async def get_head(self, slot: int, path: str, write_id: str | None = None) -> HeadAnswer:
        ...

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes]) -> PartInfo:
        """Store one part of a pending write of `generation` (not yet visible)."""
        ...

    async def apply_head(self, head: Head, parts: Sequence[PartInfo], inline: bytes | None,
                         write_result: dict[str, Any] | None,
                         layout_version: int) -> ApplyAnswer:
        """Make `head` current if it beats the replica's own by the head order.
        `inline`: the whole object, for one small enough to live in its row
        (then `parts` is empty). `write_result` is recorded for the head's
        write id either way."""
        ...

    async def abort(self, slot: int, path: str, generation: int) -> None:
        """Remove the parts uploaded for a write of `generation` that will not commit."""
        ...

    async def restore_part(self, head: Head, index: int,
                           chunks: AsyncIterable[bytes]) -> PartInfo:
        """Put back part `index` of `head`, a head the replica already holds
        whose copy of that part was lost (quarantined or missing), from the
        bytes `chunks`. The replica checks them against the sha256 and size
        its own rows give that part and installs them only if they match
        (RFC 0017); PartMissing when it does not hold `head`."""
        ...

    def read_part(self, head: Head, index: int, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start..end` (end exclusive, within the part) of part `index`
        of the object `head` names. Raises PartMissing if absent."""
        ...

    async def list_heads(self, slot: int | None, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        """Current heads (tombstones included) in path order after `after`;
        `slot` None: every slot the replica holds."""
        ...

    # -- digests (RFC 0014) ---------------------------------------------------

    async def digest_tops(self) -> dict[int, bytes]:
        """The digest of every slot with heads here (absent: empty)."""
        ...

    async def digest_groups(self, slot: int) -> tuple[bytes, ...]:
        """The group digests of `slot` (`rimio.core.digest.GROUPS` of them)."""
        ...

    async def digest_slotlets(self, slot: int, groups: Sequence[int]) -> dict[int, bytes]:
        """The non-empty slotlet digests of `groups` of `slot`, by slotlet."""
        ...

    async def slotlet_heads(self, slot: int, slotlets: Sequence[int]) -> dict[str, HeadKey]:
        """The head order key of every current head of `slot` in `slotlets`."""
        ...

    # -- tombstone purging (RFC 0015) ------------------------------------------

    async def heads_held(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        """The paths of `keys` whose current head here is exactly that head."""
        ...

    async def purge_tombstones(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        """Forget each tombstone of `keys` that is still the current head of
        its path here; the paths forgotten."""
        ...
