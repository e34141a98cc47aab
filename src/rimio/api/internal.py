"""`/internal/v1`: the node-to-node API (gossip transport and bootstrap).

With a cluster key configured, every request here must carry a valid
signature (`rimio.core.auth`) and a body matching its signed digest;
otherwise it gets 401 and changes nothing. Bodies are bounded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import trio
from quart import Blueprint, Response, request

from rimio.api.public import json_response, raw_target
from rimio.core.auth import AuthError, ReplayGuard, verify
from rimio.errors import BadRequest, PayloadTooLarge, Unauthorized
from rimio.net.http import CONTENT_TYPE
from rimio.ops.objects import MAX_LIST_LIMIT

if TYPE_CHECKING:
    from rimio.api.app import NodeView


async def _read_bounded(limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"internal request bodies are limited to {limit} bytes")
    return bytes(data)


def internal_routes(view: NodeView) -> Blueprint:
    bp = Blueprint("internal", __name__)
    guard = ReplayGuard()
    keyring = view.keyring
    max_body = view.max_frame_size

    async def authenticated_body() -> bytes:
        body = await _read_bounded(max_body)
        if keyring is None:
            return body
        target = raw_target()
        try:
            headers = cast(Mapping[str, str], request.headers)  # case-insensitive
            verified = verify(keyring.mac_keys, request.method, target, headers,
                              time.time(), guard)
        except AuthError as exc:
            raise Unauthorized(f"internal request refused: {exc}") from None
        if hashlib.sha256(body).hexdigest() != verified.digest:
            raise Unauthorized("internal request refused: body does not match its digest")
        return body

    @bp.route("/internal/v1/gossip/packet", methods=["POST"])
    async def gossip_packet() -> Response:
        received_at = trio.current_time()  # stamp on receipt, before anything else
        body = await authenticated_body()
        membership = view.membership
        if membership is not None:
            membership.deliver_packet(request.args.get("from", ""), body, received_at)
        return Response(b"", status=204)

    @bp.route("/internal/v1/gossip/stream", methods=["POST"])
    async def gossip_stream() -> Response:
        received_at = trio.current_time()
        body = await authenticated_body()
        membership = view.membership
        reply = None
        if membership is not None:
            reply = membership.answer_stream(request.args.get("from", ""), body, received_at)
        if reply is None:
            return Response(b"", status=204)
        return Response(reply, status=200, content_type=CONTENT_TYPE)

    @bp.route("/internal/v1/heads", methods=["GET"])
    async def heads() -> Response:
        """This node's current heads, tombstones included, for cluster listings."""
        await authenticated_body()
        args = request.args
        limit_text = args.get("limit", "1000")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT + 1:
            raise BadRequest("limit out of range")
        found = await view.objects.local_heads(args.get("prefix", ""), args.get("after"),
                                               int(limit_text))
        return json_response({"heads": [h.to_dict() for h in found]})

    @bp.route("/internal/v1/cluster/bootstrap", methods=["GET"])
    async def bootstrap() -> Response:
        await authenticated_body()
        return json_response(view.bootstrap_state())

    @bp.route("/internal/v1/cluster/gossip-seeds", methods=["GET"])
    async def gossip_seeds() -> Response:
        await authenticated_body()
        return json_response({"seeds": view.gossip_seeds()})

    return bp
