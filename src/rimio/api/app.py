"""The quart-trio application of one node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quart_trio import QuartTrio

from rimio.api.body import BackpressureHTTPConnection, BoundedRequest
from rimio.api.errors import install_error_handlers
from rimio.api.public import public_routes
from rimio.ops.objects import ObjectService


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the routes need to know about the node that serves them."""

    node_id: str
    cluster_name: str
    address: str
    objects: ObjectService

    def nodes(self) -> list[dict[str, Any]]:
        # Membership arrives with the SWIM issue; until then the node knows itself.
        return [{"node_id": self.node_id, "address": self.address, "status": "alive",
                 "incarnation": 0}]


def create_app(view: NodeView) -> QuartTrio:
    app = QuartTrio("rimio")
    app.asgi_http_class = BackpressureHTTPConnection
    app.request_class = BoundedRequest
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # enforced by ObjectService against the node's config
        RESPONSE_TIMEOUT=None,  # a 1 GiB GET on a slow link must not be cut off
        BODY_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    install_error_handlers(app)
    app.register_blueprint(public_routes(view))
    return app
