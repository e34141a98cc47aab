"""The one exception hierarchy of Rimio.

Every error a client can cause or observe is a `RimioError` with a stable
machine-readable `code` and an HTTP `status`; `rimio.api.errors` turns them
into JSON responses in one place.
"""

from __future__ import annotations


class RimioError(Exception):
    """Base of every error Rimio reports to a caller."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RimioError):
    status = 400
    code = "bad_request"


class Unauthorized(RimioError):
    status = 401
    code = "unauthorized"


class NotFound(RimioError):
    status = 404
    code = "not_found"


class MethodNotAllowed(RimioError):
    status = 405
    code = "method_not_allowed"


class Conflict(RimioError):
    status = 409
    code = "conflict"


class Gone(RimioError):
    status = 410
    code = "gone"


class PreconditionFailed(RimioError):
    status = 412
    code = "precondition_failed"


class PayloadTooLarge(RimioError):
    status = 413
    code = "payload_too_large"


class RangeNotSatisfiable(RimioError):
    """416; carries the object size for the `Content-Range: bytes */size` header."""

    status = 416
    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class QuorumLost(RimioError):
    status = 503
    code = "quorum_lost"


class ShuttingDown(RimioError):
    status = 503
    code = "shutting_down"


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
