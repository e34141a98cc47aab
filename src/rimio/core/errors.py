"""The error hierarchy of Rimio, free of any transport.

Every error a client can cause or observe is a `RimioError` with a stable,
machine-readable `code`. Nothing here knows about HTTP: `rimio.api.errors`
alone decides which status each class answers with. `MalformedHead` is not
a `RimioError` on purpose: a head that cannot be parsed comes from a peer or
from the node's own database, never from the client, so it must surface as
a fault of the node (or be handled by whoever read it), not as a 400.
"""

from __future__ import annotations


class RimioError(Exception):
    """Base of every error Rimio reports to a caller."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RimioError):
    code = "bad_request"


class InvalidPath(BadRequest):
    """A blob path that the path rules refuse."""


class Unauthorized(RimioError):
    code = "unauthorized"


class NotFound(RimioError):
    code = "not_found"


class MethodNotAllowed(RimioError):
    code = "method_not_allowed"


class Conflict(RimioError):
    code = "conflict"


class Gone(RimioError):
    code = "gone"

    def __init__(self, message: str, *, generation: int | None = None,
                 degraded: bool = False) -> None:
        super().__init__(message)
        # The tombstone's generation, and whether fewer than a read quorum of
        # replicas answered (the API says both in headers).
        self.generation = generation
        self.degraded = degraded


class PreconditionFailed(RimioError):
    code = "precondition_failed"


class PayloadTooLarge(RimioError):
    code = "payload_too_large"


class RangeNotSatisfiable(RimioError):
    """A range that selects no byte; carries the object size for `bytes */size`."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class QuorumLost(RimioError):
    code = "quorum_lost"


class OutcomeUnknown(RimioError):
    """A write reached some replicas but not enough to be acknowledged: it may
    or may not become visible. A retry with the same write id settles it."""

    code = "outcome_unknown"


class ShuttingDown(RimioError):
    code = "shutting_down"


class Resyncing(RimioError):
    """This node was out of touch with its peers for longer than the
    tombstone retention and serves no reads until it has re-synced (RFC 0015 §4)."""

    code = "resyncing"


class Busy(RimioError):
    """The node cannot take this request now; the caller should retry later."""

    code = "busy"


class StorageCorrupt(RimioError):
    """The node's own disk contradicts its metadata (a missing or short part)."""

    code = "storage_corrupt"


class PartCorrupt(StorageCorrupt):
    """A part's bytes as read do not hash to the sha256 that names them (a
    flipped bit, a torn sector): the part is quarantined, never served."""

    code = "part_corrupt"


class InsufficientStorage(RimioError):
    code = "insufficient_storage"


class DiskError(RimioError):
    """An I/O error of the node's disk that is not a full disk."""

    code = "disk_error"


class MalformedHead(ValueError):
    """A head record that does not parse; a fault of whoever produced it."""


class ConfigError(Exception):
    """A configuration that cannot be used; the CLI prints it on one line."""


def rimio_error_in(exc: BaseException) -> RimioError | None:
    """The RimioError a (possibly nested) exception group carries, if any.

    trio nurseries wrap errors in groups; a client should still get the
    error's own status, not a 500.
    """
    if isinstance(exc, RimioError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = rimio_error_in(inner)
            if found is not None:
                return found
    return None
