"""Request bodies with backpressure.

Quart's stock ASGI connection appends every received chunk to the request
body without waiting for the handler, so a fast client and a slow disk would
pile a whole upload up in memory. Here the receive loop stops pulling from
the server once `HIGH_WATER` bytes wait unread; hypercorn's bounded app queue
then stops reading the socket, and TCP pushes back on the client.
"""

from __future__ import annotations

from typing import Any

import trio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest

HIGH_WATER = 1024 * 1024


class BoundedBody(TrioBody):  # type: ignore[misc]
    def __init__(self, expected_content_length: int | None,
                 max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = trio.Event()

    async def __anext__(self) -> bytes:
        data: bytes = await super().__anext__()
        self._drained.set()
        return data

    async def wait_drained(self) -> None:
        while len(self._data) >= HIGH_WATER and self._must_raise is None:
            self._drained = trio.Event()
            await self._drained.wait()


class BoundedRequest(TrioRequest):  # type: ignore[misc]
    body_class = BoundedBody


class BackpressureHTTPConnection(TrioASGIHTTPConnection):  # type: ignore[misc]
    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, receive: Any
    ) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.request":
                request.body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    request.body.set_complete()
                else:
                    await request.body.wait_drained()
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()


def close_if_body_unread(request: Any, response: Any) -> Any:
    """Mark a response `Connection: close` when the request body was not read.

    A response sent before the whole body arrived (an early error, a write-id
    replay) leaves unread bytes on the connection; the client must not reuse
    it, or its next request would be parsed as the rest of this body.
    """
    body = getattr(request, "body", None)
    if isinstance(body, BoundedBody) and not body._complete.is_set():
        response.headers["Connection"] = "close"
    return response
