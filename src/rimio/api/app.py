"""The quart-trio application of one node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.routing import PathConverter

from rimio.api.body import BackpressureHTTPConnection, BoundedRequest, close_if_body_unread
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


class AnyPathConverter(PathConverter):  # type: ignore[misc]
    """Matches anything, even empty segments and control characters, so that
    the blob handler (not the router) decides what a bad path is."""

    regex = r"[\s\S]*"
    part_isolating = False


def create_app(view: NodeView) -> QuartTrio:
    app = QuartTrio("rimio", static_folder=None)
    app.asgi_http_class = BackpressureHTTPConnection
    app.request_class = BoundedRequest
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # enforced by ObjectService against the node's config
        RESPONSE_TIMEOUT=None,  # a 1 GiB GET on a slow link must not be cut off
        BODY_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.url_map.converters["anypath"] = AnyPathConverter
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    install_error_handlers(app)

    @app.after_request
    async def _connection_hygiene(response: Response) -> Response:
        return close_if_body_unread(request, response)  # type: ignore[no-any-return]

    app.register_blueprint(public_routes(view))
    return app
