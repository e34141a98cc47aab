"""`/api/v1/blobs/{path}` as a plain ASGI app: GET, HEAD, PUT and DELETE of one object.

This is the hot path of a node, so it talks ASGI directly rather than through
quart's request machinery (request context, werkzeug headers, a nursery per
request), with the same answers the quart routes gave: statuses, headers,
JSON errors from `api/errors`, Range/If-Range and conditional PUTs through the
pure parsers of `api/http`. A path whose slot another node holds is forwarded
there through the node's `PeerClient`, streaming both ways. The listing
(`/api/v1/blobs` without a path) stays on quart, in `api/blobs`.
"""

from __future__ import annotations

import json
from typing import Any

from rimio.api.asgi_io import AsgiRequest, AsgiResponder, ClientGone, Receive, Scope, Send
from rimio.api.errors import answer_for, error_body
from rimio.api.http import (
    blob_path_of,
    parse_content_length,
    parse_precondition,
    requested_range,
)
from rimio.core.errors import QuorumLost
from rimio.ops.coordinator import CoordinatedObject
from rimio.ops.first_chunk import peel, rejoin
from rimio.ops.objects import ObjectService, PutRequest, WriteOutcome

# Objects up to this size are read in the same worker-thread call as their head.
INLINE_READ = 1024 * 1024
METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_JSON = "application/json"


def _write_payload(outcome: WriteOutcome) -> dict[str, object]:
    payload = dict(outcome.result)
    if outcome.replay:
        payload["idempotent_replay"] = True
    return payload


def _has(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc`, or an exception inside its (nested) groups, is a `kind`."""
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_has(inner, kind) for inner in exc.exceptions)
    return False


class BlobApp:
    """The ASGI app of one node's object requests, over its `ObjectService`.

    `node_id` names this node in the requests it forwards (the loop guard).
    """

    def __init__(self, objects: ObjectService, node_id: str) -> None:
        self._objects = objects
        self._node_id = node_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = AsgiRequest(scope, receive)
        responder = AsgiResponder(request, send)
        try:
            await self._serve(request, responder)
        except Exception as exc:
            if _has(exc, ClientGone):
                return  # nobody is left to answer; the write was abandoned
            if responder.started:
                raise  # too late for an error answer: hypercorn drops the connection
            answer = answer_for(exc)
            await _json(responder, answer.status, answer.body, **answer.headers)

    async def _serve(self, request: AsgiRequest, responder: AsgiResponder) -> None:
        method = request.method
        if method not in METHODS:
            body = error_body("method_not_allowed",
                              "The method is not allowed for the requested URL.")
            await _json(responder, 405, body)
            return
        path = blob_path_of(request.raw_path)
        _, forward_to = self._objects.route(path)
        if forward_to is not None:
            await self._forward(request, responder, forward_to)
        elif method == "PUT":
            await self._put(request, responder, path)
        elif method == "DELETE":
            outcome = await self._objects.delete(path, request.headers.get("x-rimio-write-id"))
            await _json(responder, 200, _dumps(_write_payload(outcome)))
        else:
            await self._get(request, responder, path)

    async def _put(self, request: AsgiRequest, responder: AsgiResponder, path: str) -> None:
        headers = request.headers
        req = PutRequest(
            path=path,
            body=request.body(),
            content_length=parse_content_length(headers.get("content-length")),
            write_id=headers.get("x-rimio-write-id"),
            precondition=parse_precondition(headers.get("if-match"),
                                            headers.get("if-none-match")),
        )
        outcome = await self._objects.put(req)
        await _json(responder, 200 if outcome.replay else 201, _dumps(_write_payload(outcome)),
                    ETag=f'"{outcome.result["etag"]}"')

    async def _get(self, request: AsgiRequest, responder: AsgiResponder, path: str) -> None:
        """GET or HEAD: the whole object (200) or one byte range of it (206)."""
        objects = self._objects
        head_only = request.method == "HEAD"
        obj, inline = await objects.open_read(path, -1 if head_only else INLINE_READ)
        head = obj.head
        etag = f'"{head.etag}"'
        byte_range = requested_range(request.headers.get("range"),
                                     request.headers.get("if-range"), etag, head.size_bytes)
        headers = {
            "ETag": etag,
            "X-Rimio-Generation": str(head.generation),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if isinstance(obj, CoordinatedObject) and obj.degraded:
            # Fewer replicas than a read quorum answered: the newest write may be missing.
            headers["X-Rimio-Read-Quorum"] = "degraded"
        if byte_range is None:
            start, end, status = 0, head.size_bytes - 1, 200
        else:
            start, end, status = byte_range.start, byte_range.end, 206
            headers["Content-Range"] = byte_range.content_range()
        length = end - start + 1
        headers["Content-Length"] = str(length)
        if head_only or length == 0:
            await responder.whole(status, headers, b"")
        elif inline is not None:
            # (a slice of the whole object only when a range asks for one)
            body = inline if length == len(inline) else inline[start:end + 1]
            await responder.whole(status, headers, body)
        else:
            await objects.check_readable(obj)
            # The first chunk before the answer starts: a part that fails its
            # check there (a small one is checked whole) is an error status,
            # not a broken 200 (rfcs/0013).
            chunks = objects.read(obj, start, end)
            first = await peel(chunks)
            await responder.stream(status, headers, rejoin(first, chunks))

    async def _forward(self, request: AsgiRequest, responder: AsgiResponder,
                       address: str) -> None:
        """Serve the request from the node at `address`, streaming both ways."""
        peers = self._objects.peers
        if peers is None:
            raise QuorumLost("this node cannot reach other nodes")
        body = request.body() if request.method == "PUT" else None
        answer = await peers.forward(address, request.method, request.raw_target(),
                                     request.header_items(), body, via=self._node_id)
        # As quart sent them: a body without a length is chunked, and an answer
        # without a type gets quart's default one.
        headers = dict(answer.headers)
        headers.setdefault("content-type", "text/html; charset=utf-8")
        if answer.body is None:
            headers.setdefault("content-length", "0")
            await responder.whole(answer.status, headers, b"")
        else:
            await responder.stream(answer.status, headers, answer.body)


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


async def _json(responder: AsgiResponder, status: int, body: bytes, **extra: str) -> None:
    headers = {"Content-Type": _JSON, "Content-Length": str(len(body)), **extra}
    await responder.whole(status, headers, body)

