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
