"""The one place where errors become HTTP answers: JSON `{error: {code, message}}`.

`answer_for` is the answer as data, for the lean blob path (`api/asgi_blobs`);
the quart error handlers turn the same answers into quart responses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from rimio.core.errors import (
    BadRequest,
    Busy,
    Conflict,
    DiskError,
    Gone,
    InsufficientStorage,
    MethodNotAllowed,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    PreconditionFailed,
    QuorumLost,
    RangeNotSatisfiable,
    Resyncing,
    RimioError,
    ShuttingDown,
    StorageCorrupt,
    Unauthorized,
    rimio_error_in,
)
from rimio.core.replica import PartMissing, ReplicaUnavailable, StaleLayout

log = logging.getLogger("rimio.api")

# The layout version an internal replica request was sent under, and the one
# a replica answers `409 stale_layout` with (RFC 0011 §5).
LAYOUT_VERSION_HEADER = "X-Rimio-Layout-Version"

# The HTTP status of each error class; a subclass answers as its nearest
# listed ancestor, and anything unlisted is a 500.
STATUS: dict[type[RimioError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    Gone: 410,
    PartMissing: 404,
    StaleLayout: 409,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    RangeNotSatisfiable: 416,
    StorageCorrupt: 500,
    # An I/O error of this node's disk: another node (or a later try) may serve it.
    DiskError: 503,
    QuorumLost: 503,
    # Some replicas applied the write, too few to acknowledge it: retry with the write id.
    OutcomeUnknown: 503,
    ShuttingDown: 503,
    Resyncing: 503,
    Busy: 503,
    ReplicaUnavailable: 503,
    InsufficientStorage: 507,
}


def status_of(exc: RimioError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What a client gets for an error: a status, a JSON body and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def answer_for(exc: BaseException) -> ErrorAnswer:
    """The answer to an exception a handler raised: a RimioError (also one
    inside exception groups) keeps its status; anything else is a 500, logged."""
    err = rimio_error_in(exc)
    if err is None:
        log.error("unhandled error", exc_info=exc)
        return ErrorAnswer(500, error_body("internal_error", "internal error; see the node's log"))
    status = status_of(err)
    headers = {}
    if isinstance(err, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{err.size}"
    if isinstance(err, Busy):
        headers["Retry-After"] = "1"
    if isinstance(err, Gone):
        if err.generation is not None:
            headers["X-Rimio-Generation"] = str(err.generation)
        if err.degraded:
            headers["X-Rimio-Read-Quorum"] = "degraded"
    if isinstance(err, StaleLayout):
        headers[LAYOUT_VERSION_HEADER] = str(err.replica_version)
    if status >= 500:
        log.warning("%s: %s", err.code, err.message)
    return ErrorAnswer(status, error_body(err.code, err.message), headers)


def _response(answer: ErrorAnswer) -> Response:
    resp = Response(answer.body, status=answer.status, content_type="application/json")
    resp.headers.update(answer.headers)
    return resp


def install_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return _response(ErrorAnswer(status, error_body(code, exc.description or exc.name
                                                        or "error")))

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        return _response(answer_for(exc))
