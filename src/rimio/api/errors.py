"""The one place where errors become HTTP responses: JSON `{error: {code, message}}`."""

from __future__ import annotations

import json
import logging

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
    PayloadTooLarge,
    PreconditionFailed,
    QuorumLost,
    RangeNotSatisfiable,
    RimioError,
    ShuttingDown,
    StorageCorrupt,
    Unauthorized,
    rimio_error_in,
)

log = logging.getLogger("rimio.api")

# The HTTP status of each error class; a subclass answers as its nearest
# listed ancestor, and anything unlisted is a 500.
STATUS: dict[type[RimioError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    Gone: 410,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    RangeNotSatisfiable: 416,
    StorageCorrupt: 500,
    DiskError: 500,
    QuorumLost: 503,
    ShuttingDown: 503,
    Busy: 503,
    InsufficientStorage: 507,
}


def status_of(exc: RimioError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


def error_response(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, content_type="application/json")


def install_error_handlers(app: QuartTrio) -> None:
    async def _rimio(exc: RimioError) -> Response:
        status = status_of(exc)
        resp = error_response(status, exc.code, exc.message)
        if isinstance(exc, RangeNotSatisfiable):
            resp.headers["Content-Range"] = f"bytes */{exc.size}"
        if status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return resp

    app.register_error_handler(RimioError, _rimio)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(status, code, exc.description or exc.name or "error")

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        wrapped = rimio_error_in(exc)
        if wrapped is not None:
            return await _rimio(wrapped)
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the node's log")
