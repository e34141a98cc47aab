"""Plain ASGI request and response plumbing for the lean blob path.

`AsgiRequest` reads what a handler needs straight from the ASGI scope and
pulls the request body from `receive` only as its consumer reads it: nothing
is buffered here, so hypercorn's bounded app queue stops reading the socket
while the store is busy, and TCP pushes back on the client.

`AsgiResponder` sends answers: whole ones (two ASGI messages), and streamed
ones where the next chunk is produced while the current one is sent (a
one-slot lookahead), watching for the client going away meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# A stream's source gets this long to close (an upstream connection) when its
# response is abandoned, even inside a cancelled scope.
_CLOSE_GRACE = 5.0


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class AsgiRequest:
    """One HTTP request as the ASGI server delivered it."""

    __slots__ = ("_receive", "_scope", "complete", "headers", "method", "query", "raw_path")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._scope = scope
        self._receive = receive
        self.method: str = scope["method"]
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        self.query: bytes = scope.get("query_string", b"")
        # Lower-case names; a repeated header reads as its first value, as in
        # werkzeug's `Headers.get`.
        self.headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        self.complete = False  # the whole body has been received

    def header_items(self) -> list[tuple[str, str]]:
        """Every header, repeated ones included, in the order received."""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._scope["headers"]]

    def raw_target(self) -> str:
        """The request target as the client sent it (path and query, undecoded)."""
        path = self.raw_path.decode("latin-1")
        return f"{path}?{self.query.decode('latin-1')}" if self.query else path

    def has_body(self) -> bool:
        # (a request without a body may not have had its empty body delivered yet)
        return (self.headers.get("content-length", "0") != "0"
                or "chunked" in self.headers.get("transfer-encoding", ""))

    def body_unread(self) -> bool:
        """Whether body bytes may still wait on the connection."""
        return not self.complete and self.has_body()

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, chunk by chunk as received; raises ClientGone if
        the client disconnects first."""
        while not self.complete:
            message = await self._receive()
            if message["type"] == "http.request":
                self.complete = not message.get("more_body", False)
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
            elif message["type"] == "http.disconnect":
                raise ClientGone()

    async def wait_disconnect(self) -> None:
        """Return when the client has gone away. Only once the body is complete:
        until then `receive` delivers body chunks."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return


def encode_headers(headers: dict[str, str]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class AsgiResponder:
    """Sends the response of one request; knows whether it has started."""

    __slots__ = ("_finishing", "_request", "_send", "started")

    def __init__(self, request: AsgiRequest, send: Send) -> None:
        self._request = request
        self._send = send
        self.started = False
        self._finishing = False

    async def start(self, status: int, headers: dict[str, str]) -> None:
        if self._request.body_unread():
            # An answer given before the whole body arrived (an error, a
            # write-id replay) leaves unread bytes on the connection; the client
            # must not reuse it, or its next request would be parsed as the
            # rest of this body.
            headers["Connection"] = "close"
        self.started = True
        await self._send({"type": "http.response.start", "status": status,
                          "headers": encode_headers(headers)})

    async def whole(self, status: int, headers: dict[str, str], body: bytes) -> None:
        """A response with its whole body in hand. `headers` must hold its
        Content-Length (for HEAD, the length a GET would have)."""
        await self.start(status, headers)
        self._finishing = True
        await self._send({"type": "http.response.body",
                          "body": b"" if self._request.method == "HEAD" else body})

    async def stream(self, status: int, headers: dict[str, str],
                     chunks: AsyncIterator[bytes]) -> None:
        """A response whose body is produced while it is sent.

        The next chunk is produced (read from disk, received from a peer)
        while the current one is sent. Once the request body is complete, a
        client that disconnects stops the stream (and its reads); hypercorn
        would otherwise accept and drop every remaining chunk.
        """
        await self.start(status, headers)
        async with trio.open_nursery() as nursery:
            if self._request.complete or not self._request.has_body():
                nursery.start_soon(self._stop_when_gone, nursery.cancel_scope)
            await _overlapped(chunks, self._send_chunk)
            # hypercorn delivers `http.disconnect` from inside this last send;
            # the watcher must not cancel it, or the socket is never closed.
            self._finishing = True
            await self._send({"type": "http.response.body", "body": b""})
            nursery.cancel_scope.cancel()

    async def _send_chunk(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _stop_when_gone(self, scope: trio.CancelScope) -> None:
        await self._request.wait_disconnect()
        if not self._finishing:
            scope.cancel()


async def _overlapped(chunks: AsyncIterator[bytes],
                      sink: Callable[[bytes], Awaitable[None]]) -> None:
    """Feed `chunks` to `sink`, producing chunk n+1 while chunk n is consumed.

    The unbuffered channel holds at most one produced chunk waiting, so memory
    stays at two chunks whatever the speeds on either side.
    """
    send_ch, recv_ch = trio.open_memory_channel[bytes](0)

    async def produce() -> None:
        async with send_ch:
            try:
                async for chunk in chunks:
                    await send_ch.send(chunk)
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    with trio.CancelScope(shield=True) as scope:
                        scope.deadline = trio.current_time() + _CLOSE_GRACE
                        await aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        async with recv_ch:
            async for chunk in recv_ch:
                await sink(chunk)


async def send_json(send: Send, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole JSON answer straight over ASGI (for the middlewares, which
    answer before any application has a responder)."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
