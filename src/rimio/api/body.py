"""The HTTP connection of quart-trio, fixed for streaming and for closing.

Request bodies with backpressure:

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
    """quart-trio's HTTP connection with two changes: request-body
    backpressure (above), and no cancellation of a response that is already
    finishing. hypercorn delivers `http.disconnect` from *inside* the app's
    last `send`; the stock connection then cancels the handler mid-send,
    which interrupts hypercorn closing the socket, so `Connection: close` was
    never honoured and idle connections were never reaped."""

    async def __call__(self, receive: Any, send: Any) -> None:
        self._response_done = False

        async def tracking_send(message: Any) -> None:
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                self._response_done = True
            await send(message)

        request = self._create_request_from_scope(tracking_send)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.handle_messages, nursery, request, receive)
            nursery.start_soon(self.handle_request, nursery, request, tracking_send)

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
        if not self._response_done:
            # The client went away before its answer was complete: stop the handler.
            nursery.cancel_scope.cancel()


def close_if_body_unread(request: Any, response: Any) -> Any:
    """Mark a response `Connection: close` when the request body was not read.

    A response sent before the whole body arrived (an early error, a write-id
    replay) leaves unread bytes on the connection; the client must not reuse
    it, or its next request would be parsed as the rest of this body.
    """
    body = getattr(request, "body", None)
    length = request.headers.get("Content-Length", "0")
    has_body = (length != "0" or "chunked" in request.headers.get("Transfer-Encoding", ""))
    # (a request without a body may not have had its empty body delivered yet)
    if has_body and isinstance(body, BoundedBody) and not body._complete.is_set():
        response.headers["Connection"] = "close"
    return response
