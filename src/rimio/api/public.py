"""`/api/v1`: the public API on quart: the node routes here, the listing in `api/blobs`
(the object routes are the plain ASGI app of `api/asgi_blobs`)."""

from __future__ import annotations

from typing import Any, Protocol

from quart import Blueprint, Response, request

from rimio.api.blobs import BlobHandlers
from rimio.api.http import json_response
from rimio.api.openapi import OPENAPI_PATH, openapi_json
from rimio.core.errors import BadRequest
from rimio.ops.objects import ObjectService


class PublicNode(Protocol):
    """What the public routes read of the node that serves them (`NodeView` is one)."""

    @property
    def node_id(self) -> str: ...
    @property
    def cluster_name(self) -> str: ...
    @property
    def objects(self) -> ObjectService: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def cluster_state(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...


class NodeHandlers:
    """Health, membership and placement, as a client sees them."""

    def __init__(self, node: PublicNode) -> None:
        self._node = node

    async def healthz(self) -> Response:
        return json_response({"status": "ok", "node_id": self._node.node_id,
                              "cluster": self._node.cluster_name})

    async def nodes(self) -> Response:
        return json_response({"nodes": self._node.nodes()})

    async def cluster(self) -> Response:
        return json_response(self._node.cluster_state())

    async def status(self) -> Response:
        return json_response(self._node.status())

    async def resolve(self) -> Response:
        path = request.args.get("path")
        if path is None:
            raise BadRequest("the 'path' query parameter is required")
        res = self._node.objects.resolve(path)
        return json_response({"path": res.path, "slot_id": res.slot_id,
                              "replicas": list(res.replicas), "write_quorum": res.write_quorum,
                              "slot_epoch": res.slot_epoch})


async def openapi() -> Response:
    return Response(openapi_json(), status=200, content_type="application/json")


def public_routes(node: PublicNode) -> Blueprint:
    bp = Blueprint("public", __name__)
    handlers = NodeHandlers(node)
    bp.add_url_rule("/api/v1/healthz", "healthz", handlers.healthz, methods=["GET"])
    bp.add_url_rule("/api/v1/nodes", "nodes", handlers.nodes, methods=["GET"])
    bp.add_url_rule("/api/v1/cluster", "cluster", handlers.cluster, methods=["GET"])
    bp.add_url_rule("/api/v1/status", "status", handlers.status, methods=["GET"])
    bp.add_url_rule("/api/v1/slots/resolve", "resolve", handlers.resolve, methods=["GET"])
    bp.add_url_rule(OPENAPI_PATH, "openapi", openapi, methods=["GET"])
    bp.register_blueprint(BlobHandlers(node.objects).blueprint())
    return bp
