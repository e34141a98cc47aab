"""The object routes of the public API: `/api/v1/blobs` and `/api/v1/blobs/<path>`.

`BlobHandlers` turns HTTP requests into `ObjectService` calls and their
results into responses. A request for a path whose slot another node holds is
forwarded there through the node's `PeerClient`; this module only turns the
forwarded answer into a quart response.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from rimio.api.http import (
    blob_path,
    json_response,
    parse_content_length,
    parse_precondition,
    raw_target,
    request_body,
    requested_range,
)
from rimio.core.errors import BadRequest, QuorumLost
from rimio.ops.objects import DEFAULT_LIST_LIMIT, ObjectService, PutRequest, WriteOutcome

# Objects up to this size are read in the same worker-thread call as their head.
INLINE_READ = 1024 * 1024
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _write_payload(outcome: WriteOutcome) -> dict[str, object]:
    payload = dict(outcome.result)
    if outcome.replay:
        payload["idempotent_replay"] = True
    return payload


class BlobHandlers:
    """The blob routes of one node, over its `ObjectService`.

    `node_id` names this node in the requests it forwards (the loop guard).
    """

    def __init__(self, objects: ObjectService, node_id: str) -> None:
        self._objects = objects
        self._node_id = node_id

    def blueprint(self) -> Blueprint:
        bp = Blueprint("blobs", __name__)
        bp.add_url_rule("/api/v1/blobs", "list", self.list_blobs, methods=["GET"])
        # The path is taken from the raw target (see `blob_path`), not from the
        # router, so the rule only has to match everything under the prefix.
        bp.add_url_rule("/api/v1/blobs/<anypath:_unused>", "blob", self.blob,
                        methods=["GET", "HEAD", "PUT", "DELETE"])
        return bp

    async def list_blobs(self) -> Response:
        args = request.args
        limit_text = args.get("limit", str(DEFAULT_LIST_LIMIT))
        if not limit_text.isdigit() or len(limit_text) > 9:
            raise BadRequest("limit must be a positive integer")
        include = _BOOLEANS.get(args.get("include_deleted", "false").lower())
        if include is None:
            raise BadRequest("include_deleted must be true or false")
        page = await self._objects.list(args.get("prefix", ""), int(limit_text),
                                        args.get("cursor") or None, include)
        return json_response(page)

    async def blob(self, _unused: str = "") -> Response:
        """One object: served here, or forwarded to the node holding its slot."""
        path = blob_path()
        _, forward_to = self._objects.route(path)
        if forward_to is not None:
            return await self.forward(forward_to)
        if request.method == "PUT":
            return await self.put(path)
        if request.method == "DELETE":
            return await self.delete(path)
        return await self.get(path, head_only=request.method == "HEAD")

    async def put(self, path: str) -> Response:
        headers = request.headers
        req = PutRequest(
            path=path,
            body=request_body(),
            content_length=parse_content_length(headers.get("Content-Length")),
            write_id=headers.get("X-Rimio-Write-Id"),
            precondition=parse_precondition(headers.get("If-Match"),
                                            headers.get("If-None-Match")),
        )
        outcome = await self._objects.put(req)
        resp = json_response(_write_payload(outcome), 200 if outcome.replay else 201)
        resp.headers["ETag"] = f'"{outcome.result["etag"]}"'
        return resp

    async def delete(self, path: str) -> Response:
        outcome = await self._objects.delete(path, request.headers.get("X-Rimio-Write-Id"))
        return json_response(_write_payload(outcome), 200)

    async def get(self, path: str, head_only: bool) -> Response:
        """GET or HEAD: the whole object (200) or one byte range of it (206)."""
        objects = self._objects
        obj, inline = await objects.open_read(path, -1 if head_only else INLINE_READ)
        head = obj.head
        etag = f'"{head.etag}"'
        byte_range = requested_range(request.headers.get("Range"),
                                     request.headers.get("If-Range"), etag, head.size_bytes)
        headers = {
            "ETag": etag,
            "X-Rimio-Generation": str(head.generation),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if byte_range is None:
            start, end, status = 0, head.size_bytes - 1, 200
        else:
            start, end, status = byte_range.start, byte_range.end, 206
            headers["Content-Range"] = byte_range.content_range()
        length = end - start + 1
        if head_only or length == 0:
            resp = Response(b"", status=status, headers=headers)
        elif inline is not None:
            resp = Response(inline[start:end + 1], status=status, headers=headers)
        else:
            await objects.check_readable(obj)
            resp = Response(objects.read(obj, start, end), status=status, headers=headers)
        # set last: quart sets a bytes body's own length, which HEAD must not keep
        resp.headers["Content-Length"] = str(length)
        return resp

    async def forward(self, address: str) -> Response:
        """Serve the request from the node at `address`, streaming both ways."""
        peers = self._objects.peers
        if peers is None:
            raise QuorumLost("this node cannot reach other nodes")
        body = request_body() if request.method == "PUT" else None
        answer = await peers.forward(address, request.method, raw_target(),
                                     request.headers.items(), body, via=self._node_id)
        resp = Response(b"" if answer.body is None else answer.body, status=answer.status,
                        headers=answer.headers)
        length = answer.headers.get("content-length")
        if length is not None:
            # quart sets the length of a bytes body (0 for HEAD); the upstream's is the truth
            resp.headers["Content-Length"] = length
        return resp
