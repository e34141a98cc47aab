"""`NodeApp`: the ASGI entry of a node's HTTP API.

Object requests (`/api/v1/blobs/{path}`) go to the lean ASGI handler of
`api/asgi_blobs`; everything else (the listing, health, nodes, placement, the
internal API, lifespan events) goes to the quart-trio app. Wrappers (request
counting, access tokens) wrap this whole app, so they see both.
"""

from __future__ import annotations

from typing import Any

from rimio.api.asgi_io import Receive, Scope, Send

# Matched on the decoded path, as quart's router matched it: a raw
# `/api/v1/blobs%2Fx` is still an object request (a bad one).
BLOB_ROUTE = "/api/v1/blobs/"


class NodeApp:
    def __init__(self, blobs: Any, rest: Any) -> None:
        self.blobs = blobs
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(BLOB_ROUTE):
            await self.blobs(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
