"""Counting in-flight HTTP requests, so a stop can wait for exactly those.

hypercorn (behind quart-trio) keeps idle keep-alive connections open through
a graceful shutdown until its whole graceful timeout has passed. A node that
stops should wait for requests, not for idle connections: `InFlight` wraps
the ASGI app, counts HTTP requests that have not finished, and lets the node
wait until none are left before it cancels the server.
"""

from __future__ import annotations

from typing import Any

import trio


class InFlight:
    def __init__(self, app: Any) -> None:
        self._app = app
        self.count = 0
        self._idle = trio.Event()
        self._idle.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self._app(scope, receive, send)
            return
        if self.count == 0:
            self._idle = trio.Event()
        self.count += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        while self.count:
            await self._idle.wait()
