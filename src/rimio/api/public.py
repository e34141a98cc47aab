"""`/api/v1`: the public API of DESIGN §2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from quart import Blueprint, Response, request

from rimio.cluster.peers import FORWARDED_BY
from rimio.core.ranges import parse_range
from rimio.core.writes import Precondition
from rimio.errors import BadRequest, QuorumLost
from rimio.ops.objects import DEFAULT_LIST_LIMIT, PutRequest

if TYPE_CHECKING:
    from rimio.api.app import NodeView

BLOBS_PREFIX = b"/api/v1/blobs/"
# Objects up to this size are read in the same worker-thread call as their head.
INLINE_READ = 1024 * 1024
# What a forwarded request and its answer carry across (hop-by-hop headers stay).
_FORWARD_REQUEST = {"content-length", "content-type", "range", "if-range", "if-match",
                    "if-none-match", "x-rimio-write-id"}
_FORWARD_RESPONSE = {"content-type", "etag", "x-rimio-generation", "accept-ranges",
                     "content-range"}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _blob_path() -> str:
    """The blob path from the raw request target, strictly UTF-8 decoded."""
    raw: bytes = request.scope.get("raw_path") or request.path.encode("utf-8")
    raw = raw.split(b"?", 1)[0]
    if not raw.startswith(BLOBS_PREFIX):
        raise BadRequest("path is empty")
    try:
        return unquote_to_bytes(raw[len(BLOBS_PREFIX):]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("path is not valid UTF-8") from None


def raw_target() -> str:
    """The request target as the client sent it (path and query, undecoded)."""
    path = request.scope.get("raw_path", b"").decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _etag_list(value: str) -> tuple[str, ...]:
    tags = []
    for item in value.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        tags.append(item.strip('"'))
    return tuple(t for t in tags if t)


def _precondition() -> Precondition | None:
    if_match = request.headers.get("If-Match")
    if_none = request.headers.get("If-None-Match")
    if if_none is not None and if_none.strip() != "*":
        raise BadRequest("only 'If-None-Match: *' is supported on PUT")
    if if_match is None and if_none is None:
        return None
    return Precondition(
        if_match=_etag_list(if_match) if if_match is not None else None,
        if_none_match_any=if_none is not None,
    )


def _content_length() -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise BadRequest("Content-Length is not a number")
    return int(value)


async def _body() -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


def public_routes(view: NodeView) -> Blueprint:
    bp = Blueprint("public", __name__)
    objects = view.objects

    @bp.route("/api/v1/healthz", methods=["GET"])
    async def healthz() -> Response:
        return json_response({"status": "ok", "node_id": view.node_id,
                              "cluster": view.cluster_name})

    @bp.route("/api/v1/nodes", methods=["GET"])
    async def nodes() -> Response:
        return json_response({"nodes": view.nodes()})

    @bp.route("/api/v1/slots/resolve", methods=["GET"])
    async def resolve() -> Response:
        path = request.args.get("path")
        if path is None:
            raise BadRequest("the 'path' query parameter is required")
        res = objects.resolve(path)
        return json_response({"path": res.path, "slot_id": res.slot_id,
                              "replicas": list(res.replicas), "write_quorum": res.write_quorum,
                              "slot_epoch": res.slot_epoch})

    @bp.route("/api/v1/blobs", methods=["GET"])
    async def list_blobs() -> Response:
        args = request.args
        limit_text = args.get("limit", str(DEFAULT_LIST_LIMIT))
        if not limit_text.isdigit() or len(limit_text) > 9:
            raise BadRequest("limit must be a positive integer")
        include = args.get("include_deleted", "false").lower()
        if include not in ("true", "false", "1", "0"):
            raise BadRequest("include_deleted must be true or false")
        page = await objects.list(args.get("prefix", ""), int(limit_text),
                                  args.get("cursor") or None, include in ("true", "1"))
        return json_response(page)

    @bp.route("/api/v1/blobs/<anypath:_unused>", methods=["GET", "HEAD", "PUT", "DELETE"])
    async def blob(_unused: str = "") -> Response:
        path = _blob_path()
        _, forward_to = objects.route(path)
        if forward_to is not None:
            return await _forward(forward_to)
        if request.method == "PUT":
            return await _put(path)
        if request.method == "DELETE":
            outcome = await objects.delete(path, request.headers.get("X-Rimio-Write-Id"))
            payload = dict(outcome.result)
            if outcome.replay:
                payload["idempotent_replay"] = True
            return json_response(payload, 200)
        return await _get(path, head_only=request.method == "HEAD")

    async def _forward(address: str) -> Response:
        """Serve the request from the node that holds the slot, streaming both ways."""
        if request.headers.get(FORWARDED_BY):
            # The sender thought we hold the slot; we think another node does.
            raise QuorumLost("the nodes disagree on where this object lives (misrouted)")
        if objects.peers is None:
            raise QuorumLost("this node cannot reach other nodes")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD_REQUEST}
        headers[FORWARDED_BY] = view.node_id
        body = _body() if request.method == "PUT" else None
        upstream = await objects.peers.forward(address, request.method, raw_target(), headers,
                                               body)
        out_headers = {k: v for k, v in upstream.headers.items()
                       if k.lower() in _FORWARD_RESPONSE}

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        if request.method == "HEAD":
            await upstream.aclose()
            resp = Response(b"", status=upstream.status_code, headers=out_headers)
        else:
            resp = Response(stream(), status=upstream.status_code, headers=out_headers)
        if "content-length" in upstream.headers:
            resp.headers["Content-Length"] = upstream.headers["content-length"]
        return resp

    async def _put(path: str) -> Response:
        req = PutRequest(path=path, body=_body(), content_length=_content_length(),
                         write_id=request.headers.get("X-Rimio-Write-Id"),
                         precondition=_precondition())
        outcome = await objects.put(req)
        payload = dict(outcome.result)
        if outcome.replay:
            payload["idempotent_replay"] = True
            resp = json_response(payload, 200)
        else:
            resp = json_response(payload, 201)
        resp.headers["ETag"] = f'"{payload["etag"]}"'
        return resp

    async def _get(path: str, head_only: bool) -> Response:
        obj, inline = await objects.open_read(path, -1 if head_only else INLINE_READ)
        head = obj.head
        etag = f'"{head.etag}"'
        if_range = request.headers.get("If-Range")
        range_header = request.headers.get("Range")
        if if_range is not None and if_range.strip() != etag:
            range_header = None  # the client's copy is stale: send it the whole object
        byte_range = parse_range(range_header, head.size_bytes)
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
        resp.headers["Content-Length"] = str(length)
        return resp

    return bp
