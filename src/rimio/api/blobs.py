"""The object listing of the public API: `GET /api/v1/blobs` (on quart).

The object routes themselves (`/api/v1/blobs/<path>`) are a plain ASGI app,
`api/asgi_blobs`, which `api/dispatch` sends those requests to.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from rimio.api.http import json_response, parse_count
from rimio.core.errors import BadRequest
from rimio.ops.objects import DEFAULT_LIST_LIMIT, ObjectService

_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class BlobHandlers:
    """The listing route of one node, over its `ObjectService`."""

    def __init__(self, objects: ObjectService) -> None:
        self._objects = objects

    def blueprint(self) -> Blueprint:
        bp = Blueprint("blobs", __name__)
        bp.add_url_rule("/api/v1/blobs", "list", self.list_blobs, methods=["GET"])
        return bp

    async def list_blobs(self) -> Response:
        args = request.args
        limit = parse_count(args.get("limit", str(DEFAULT_LIST_LIMIT)), 9,
                            "limit must be a positive integer")
        include = _BOOLEANS.get(args.get("include_deleted", "false").lower())
        if include is None:
            raise BadRequest("include_deleted must be true or false")
        page = await self._objects.list(args.get("prefix", ""), limit,
                                        args.get("cursor") or None, include)
        return json_response(page)
