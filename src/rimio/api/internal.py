"""`/internal/v1`: the node-to-node API (gossip transport and bootstrap).

With a cluster key configured, every request here must carry a valid
signature (`rimio.core.auth`) addressed to this node and a body matching its
signed digest; otherwise it gets 401 and changes nothing. The signature
headers are checked before the body is read (a forged request costs us no
body), and the body is then checked against the signed digest. Bodies are
bounded. A full replay cache answers 503 rather than forget a nonce.

Destinations: a request must be signed for this node's id, except on the
routes a joining node reaches knowing only an address — the bootstrap and
gossip-seeds reads and the push-pull stream (whose sealed body is a
full-state merge: replayed elsewhere it changes nothing) — which also accept
`ANY_DESTINATION`. Packets, head listings and layout exchanges always name
their node (a joining node knows its seeds' ids from the bootstrap state).

The `from=` query parameter of gossip requests is informational (logs): the
membership machine sends only to addresses of members in its table.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import trio
from quart import Blueprint, Response, request

from rimio.api.http import json_response, parse_count, raw_target
from rimio.api.internal_replica import ReplicaHandlers, add_replica_routes
from rimio.core.auth import AuthError, ReplayCacheFull, ReplayGuard, Verified, verify
from rimio.core.errors import BadRequest, Busy, Conflict, NotFound, PayloadTooLarge, Unauthorized
from rimio.core.frames import FrameError
from rimio.core.keyring import KeyRing
from rimio.core.layout import LayoutError, LayoutMismatch, Role
from rimio.core.replica import RESYNCING_HEADER
from rimio.net.http import CONTENT_TYPE
from rimio.ops.objects import MAX_LIST_LIMIT, ObjectService
from rimio.ops.replica_service import ReplicaService

if TYPE_CHECKING:
    from rimio.cluster.layout import LayoutService
    from rimio.cluster.membership import MembershipService


class InternalNode(Protocol):
    """What the internal routes read of the node that serves them (`NodeView` is one)."""

    @property
    def node_id(self) -> str: ...
    @property
    def objects(self) -> ObjectService: ...
    @property
    def keyring(self) -> KeyRing | None: ...
    @property
    def membership(self) -> MembershipService: ...
    @property
    def layout(self) -> LayoutService: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def replicas(self) -> ReplicaService | None: ...
    def cluster_state(self) -> dict[str, Any]: ...
    def node_stats(self) -> dict[str, Any]: ...
    def bootstrap_state(self) -> dict[str, Any]: ...
    def gossip_seeds(self) -> list[str]: ...


async def read_bounded(limit: int) -> bytes:
    """The current request's whole body; PayloadTooLarge past `limit` bytes."""
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"internal request bodies are limited to {limit} bytes")
    return bytes(data)


class ReplayGuardBusy(Busy):
    """The replay cache is full of live nonces: answered 503, so the sender
    retries later."""


class InternalHandlers:
    """The internal routes of one node. Each handler authenticates first."""

    def __init__(self, node: InternalNode) -> None:
        self._node = node
        self._guard = ReplayGuard()  # signatures seen recently, per node

    async def authenticated_body(self, *, any_destination: bool = False) -> bytes:
        """The request body, once the request's signature and digest check out.

        The signature headers are verified first; only then is the body read
        and compared with the signed digest. `any_destination` lets a request
        signed for `ANY_DESTINATION` through (routes reached by address)."""
        return await self.authenticated_body_of(self._node.max_frame_size,
                                                any_destination=any_destination)

    async def authenticated_body_of(self, limit: int, *, any_destination: bool = False) -> bytes:
        """`authenticated_body` with a body of at most `limit` bytes."""
        verified = self.verified_headers(any_destination=any_destination)
        body = await read_bounded(limit)
        if verified is not None and hashlib.sha256(body).hexdigest() != verified.digest:
            raise Unauthorized("internal request refused: body does not match its digest")
        return body

    def verified_headers(self, *, any_destination: bool = False) -> Verified | None:
        """Check the current request's signature headers (not its body); None
        when the cluster has no key. A route that streams its body reads the
        signed digest from the result (`rimio.core.auth.STREAMED_BODY` or a hash)."""
        keyring = self._node.keyring
        if keyring is None:
            return None
        try:
            headers = cast(Mapping[str, str], request.headers)  # case-insensitive
            return verify(keyring.mac_keys, request.method, raw_target(), headers,
                          time.time(), self._guard, node_id=self._node.node_id,
                          allow_any_destination=any_destination)
        except ReplayCacheFull as exc:
            raise ReplayGuardBusy(f"internal request refused: {exc}") from None
        except AuthError as exc:
            raise Unauthorized(f"internal request refused: {exc}") from None

    async def gossip_packet(self) -> Response:
        received_at = trio.current_time()  # stamp on receipt, before anything else
        body = await self.authenticated_body()
        self._node.membership.deliver_packet(request.args.get("from", ""), body, received_at)
        return Response(b"", status=204)

    async def gossip_stream(self) -> Response:
        received_at = trio.current_time()
        body = await self.authenticated_body(any_destination=True)
        reply = self._node.membership.answer_stream(request.args.get("from", ""), body,
                                                    received_at)
        if reply is None:
            return Response(b"", status=204)
        return Response(reply, status=200, content_type=CONTENT_TYPE)

    async def layout(self) -> Response:
        """Merge the sender's layout frame; answer with ours (RFC 0011 §6)."""
        body = await self.authenticated_body()
        try:
            reply = await self._node.layout.merge_remote(body, source=request.args.get("from"))
        except FrameError as exc:
            raise BadRequest(f"not a layout frame: {exc}") from None
        except LayoutMismatch as exc:
            raise Conflict(f"another cluster's layout: {exc}") from None
        return Response(reply, status=200, content_type=CONTENT_TYPE)

    async def decommission(self) -> Response:
        """Mark a node draining (`rimio admin decommission`); a node already
        draining or removed is left as it is. Answers the cluster state."""
        body = await self.authenticated_body()
        try:
            node_id = json.loads(body)["node_id"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest('the body must be JSON {"node_id": "..."}') from None
        if not isinstance(node_id, str):
            raise BadRequest("node_id must be a string")
        service = self._node.layout
        role = service.current.role(node_id)
        if role is None:
            raise NotFound(f"{node_id} is not a member of the layout")
        if role is Role.JOINING or role is Role.ACTIVE:
            try:
                await service.update(lambda layout: layout.decommission(node_id))
            except LayoutError as exc:
                raise Conflict(str(exc)) from None
        return json_response(self._node.cluster_state())

    async def heads(self) -> Response:
        """This node's current heads, tombstones included, for cluster listings."""
        await self.authenticated_body()
        args = request.args
        limit = parse_count(args.get("limit", "1000"), 9, "limit out of range")
        if not 1 <= limit <= MAX_LIST_LIMIT + 1:
            raise BadRequest("limit out of range")
        if self._node.replicas is not None:  # no stale heads while re-syncing (RFC 0015 §4)
            self._node.replicas.check_serving(request.headers.get(RESYNCING_HEADER) == "1")
        found = await self._node.objects.local_heads(args.get("prefix", ""), args.get("after"),
                                                     limit)
        return json_response({"heads": [h.to_dict() for h in found]})

    async def stats(self) -> Response:
        """Counters of this node's storage engine (metadata databases opened,
        created and evicted; read cache hits and misses) and of slot movement."""
        await self.authenticated_body()
        return json_response(self._node.node_stats())

    async def bootstrap(self) -> Response:
        await self.authenticated_body(any_destination=True)
        return json_response(self._node.bootstrap_state())

    async def gossip_seeds(self) -> Response:
        await self.authenticated_body(any_destination=True)
        return json_response({"seeds": self._node.gossip_seeds()})


def internal_routes(node: InternalNode, replicas: ReplicaService | None = None) -> Blueprint:
    """The internal routes; with `replicas`, the replica protocol's too
    (`api/internal_replica`), under the same signature checks."""
    bp = Blueprint("internal", __name__)
    handlers = InternalHandlers(node)
    if replicas is not None:
        add_replica_routes(bp, ReplicaHandlers(handlers, replicas))
    bp.add_url_rule("/internal/v1/gossip/packet", "gossip_packet", handlers.gossip_packet,
                    methods=["POST"])
    bp.add_url_rule("/internal/v1/gossip/stream", "gossip_stream", handlers.gossip_stream,
                    methods=["POST"])
    bp.add_url_rule("/internal/v1/layout", "layout", handlers.layout, methods=["POST"])
    bp.add_url_rule("/internal/v1/layout/decommission", "decommission", handlers.decommission,
                    methods=["POST"])
    bp.add_url_rule("/internal/v1/heads", "heads", handlers.heads, methods=["GET"])
    bp.add_url_rule("/internal/v1/stats", "stats", handlers.stats, methods=["GET"])
    bp.add_url_rule("/internal/v1/cluster/bootstrap", "bootstrap", handlers.bootstrap,
                    methods=["GET"])
    bp.add_url_rule("/internal/v1/cluster/gossip-seeds", "gossip_seeds",
                    handlers.gossip_seeds, methods=["GET"])
    return bp
