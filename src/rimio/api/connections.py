"""A cap on the client connections a node holds open at once.

hypercorn 0.18 has no such cap, and an ASGI application never sees a
connection open or close, only requests. hypercorn's trio worker builds one
`TCPServer` per accepted connection from the name `TCPServer` in
`hypercorn.trio.run`; `install()` points that name at a subclass that first
asks the cap of its server's configuration for a place. A connection beyond
the cap is answered `503` with `Retry-After` and closed without reaching the
application. A configuration without a cap (any other hypercorn server in
the process) behaves exactly as before.
"""

from __future__ import annotations

import weakref
from typing import Any

import hypercorn.trio.run as hypercorn_run
import trio
from hypercorn.trio.tcp_server import TCPServer

from rimio.api.errors import error_body

# How long a refused connection is given to send its request before it is
# closed: closing with unread bytes would reset it before the client reads
# the 503.
_REFUSE_LINGER = 0.5


def _refusal() -> bytes:
    body = error_body("busy", "the node holds its maximum number of connections; "
                              "retry shortly")
    head = ("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


class ConnectionCap:
    """At most `limit` connections at once for one server; `open_now` is live."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open_now = 0


# hypercorn configuration object → its cap (a node's config lives as long as its server).
_CAPS: weakref.WeakKeyDictionary[Any, ConnectionCap] = weakref.WeakKeyDictionary()


def cap_connections(hypercorn_config: Any, limit: int) -> ConnectionCap:
    """Give the server built from `hypercorn_config` a connection cap."""
    install()
    cap = ConnectionCap(limit)
    _CAPS[hypercorn_config] = cap
    return cap


class _CappedTCPServer(TCPServer):  # type: ignore[misc]
    async def run(self) -> None:
        cap = _CAPS.get(self.config)
        if cap is None:
            await super().run()
            return
        if cap.open_now >= cap.limit:
            await _refuse(self.stream)
            return
        cap.open_now += 1
        try:
            await super().run()
        finally:
            cap.open_now -= 1


async def _refuse(stream: Any) -> None:
    with trio.move_on_after(_REFUSE_LINGER * 2):
        try:
            await stream.send_all(_refusal())
            with trio.move_on_after(_REFUSE_LINGER):
                await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    with trio.CancelScope(shield=True):
        await stream.aclose()


def install() -> None:
    """Route hypercorn's per-connection servers through the cap (idempotent)."""
    setattr(hypercorn_run, "TCPServer", _CappedTCPServer)  # noqa: B010
