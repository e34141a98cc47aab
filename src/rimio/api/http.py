"""Request and response helpers shared by the public and the internal routes.

The parsers here are pure functions of header values and raw targets, so they
are tested without a request; `raw_target` reads quart's current `request`
for the internal routes, and the lean blob path (`api/asgi_blobs`) calls the
parsers with what it reads from the ASGI scope.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from quart import Response, request

from rimio.core.errors import BadRequest
from rimio.core.ranges import ByteRange, parse_range
from rimio.core.writes import Precondition

BLOBS_PREFIX = b"/api/v1/blobs/"
_MAX_DIGITS = 19  # longer cannot be a real length; refuse rather than build a huge int


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


# -- the request target ---------------------------------------------------------


def raw_target() -> str:
    """The request target as the client sent it (path and query, undecoded)."""
    path = request.scope.get("raw_path", b"").decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def blob_path_of(raw_path: bytes) -> str:
    """The blob path in a raw request path (query already removed or not),
    percent-decoded and strictly UTF-8. Normalising it is the object layer's job."""
    raw = raw_path.split(b"?", 1)[0]
    if not raw.startswith(BLOBS_PREFIX):
        raise BadRequest("path is empty")
    try:
        return unquote_to_bytes(raw[len(BLOBS_PREFIX):]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("path is not valid UTF-8") from None


# -- header parsing -------------------------------------------------------------


def parse_count(value: str, max_digits: int, message: str) -> int:
    """A non-negative decimal of at most `max_digits` ASCII digits, or BadRequest(message).
    (isdigit alone would let "²" through, which int() refuses.)"""
    if not value.isascii() or not value.isdigit() or len(value) > max_digits:
        raise BadRequest(message)
    return int(value)


def parse_content_length(value: str | None) -> int | None:
    if value is None:
        return None
    return parse_count(value, _MAX_DIGITS, "Content-Length is not a number")


def etag_list(value: str) -> tuple[str, ...]:
    """The entity tags of an `If-Match` value, unquoted (weak tags count as strong)."""
    tags = []
    for item in value.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        tags.append(item.strip('"'))
    return tuple(t for t in tags if t)


def parse_precondition(if_match: str | None, if_none_match: str | None) -> Precondition | None:
    """A PUT's precondition from its `If-Match` and `If-None-Match` headers."""
    if if_none_match is not None and if_none_match.strip() != "*":
        raise BadRequest("only 'If-None-Match: *' is supported on PUT")
    if if_match is None and if_none_match is None:
        return None
    return Precondition(
        if_match=etag_list(if_match) if if_match is not None else None,
        if_none_match_any=if_none_match is not None,
    )


def requested_range(range_header: str | None, if_range: str | None, etag: str,
                    size: int) -> ByteRange | None:
    """The byte range a GET serves, or None for the whole object.

    `etag` is the quoted entity tag of the current object. An `If-Range` that
    names another tag means the client's copy is stale: it gets the whole
    object rather than a piece of a different one. Raises RangeNotSatisfiable
    for a valid range that selects no byte.
    """
    if if_range is not None and if_range.strip() != etag:
        return None
    return parse_range(range_header, size)
