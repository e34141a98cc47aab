"""`RequestLimits`: the per-request limits of the HTTP server, as an ASGI wrapper.

It also counts every HTTP request being served (`wait_idle`), so a stopping
node waits for requests and not for idle connections: hypercorn keeps idle
keep-alive connections open through a graceful shutdown until its whole
graceful timeout has passed.

Two limits that hypercorn does not enforce itself:

* In-flight requests. At most `max_inflight` HTTP requests are served at
  once; one more is answered `503 busy` with `Retry-After: 1` at once, before
  its body is read (and with `Connection: close`, so an unread body is not
  taken for the next request). hypercorn 0.18 has no cap on connections, and
  an ASGI app cannot refuse a connection (it sees requests, not sockets), so
  this is the cap that bounds the node's work; idle connections are bounded
  in time instead (`server.idle_timeout_seconds`). Gossip requests are not
  counted: a node busy with clients must still answer its peers, or it would
  be declared dead for being busy.

* A minimum upload rate. The body of a request must arrive at
  `min_rate` bytes per second on average, counted over the time the app
  actually waited for it (time the node spent writing, with the client held
  back by backpressure, does not count against the client), after a grace
  window of `grace` seconds. A stalled upload is cut off: the request is
  cancelled (a write is aborted and leaves nothing behind), the client gets
  `408` if no answer was started, and the connection is closed.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from rimio.api.asgi_io import Message, Receive, Scope, Send, send_json
from rimio.api.errors import error_body

EXEMPT_PREFIXES = ("/internal/v1/gossip/",)


class BodyStalled(Exception):
    """The request body arrived slower than the minimum rate."""


class _BodyClock:
    """Times the waits for one request's body against the minimum rate."""

    __slots__ = ("_grace", "_rate", "complete", "received", "waited")

    def __init__(self, min_rate: int, grace: float) -> None:
        self._rate = min_rate
        self._grace = grace
        self.received = 0  # body bytes so far
        self.waited = 0.0  # seconds spent waiting for them
        self.complete = False

    def allowance(self) -> float:
        """How long the next wait may last before the average drops below the rate."""
        if self._rate <= 0:
            return math.inf
        return max(0.0, self._grace + self.received / self._rate - self.waited)

    def timed(self, receive: Receive, stalled: trio.CancelScope) -> Receive:
        async def timed_receive() -> Message:
            if self.complete:
                return await receive()  # only the disconnect is left to wait for
            started = trio.current_time()
            with trio.move_on_after(self.allowance()) as wait:
                message = await receive()
            self.waited += trio.current_time() - started
            if wait.cancelled_caught:
                stalled.cancel()
                await trio.lowlevel.checkpoint()  # raises Cancelled into the app
                raise BodyStalled()  # not reached: the scope is cancelled
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                self.complete = not message.get("more_body", False)
            return message

        return timed_receive


class RequestLimits:
    """Wraps a node's ASGI app with the in-flight cap and the upload rate."""

    def __init__(self, app: Any, *, max_inflight: int, min_body_rate: int,
                 body_grace: float) -> None:
        self._app = app
        self.max_inflight = max_inflight
        self._min_rate = min_body_rate
        self._grace = body_grace
        self.inflight = 0  # requests the cap counts (gossip is exempt)
        self.refused = 0  # requests answered 503 for the cap, since start
        self.serving = 0  # every HTTP request not yet answered, gossip included
        self._idle = trio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no HTTP request is being served."""
        while self.serving:
            await self._idle.wait()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self._app(scope, receive, send)
            return
        if self.serving == 0:
            self._idle = trio.Event()
        self.serving += 1
        try:
            await self._admit(scope, receive, send)
        finally:
            self.serving -= 1
            if self.serving == 0:
                self._idle.set()

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        exempt = scope.get("path", "").startswith(EXEMPT_PREFIXES)
        if not exempt and self.inflight >= self.max_inflight:
            self.refused += 1
            await _busy(send)
            return
        if not exempt:
            self.inflight += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            if not exempt:
                self.inflight -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = [False]  # the answer has begun

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        clock = _BodyClock(self._min_rate, self._grace)
        # Only the body clock cancels this scope (a stop of the node cancels
        # an outer one), so `cancel_called` says the upload was too slow.
        with trio.CancelScope() as scope_of_app:
            await self._app(scope, clock.timed(receive, scope_of_app), tracking_send)
        if scope_of_app.cancel_called and not started[0]:
            # hypercorn closes the connection after this answer: the request
            # body is incomplete, so the connection cannot be reused.
            body = error_body("request_timeout",
                              "the request body arrived too slowly; upload cut off")
            await send_json(send, 408, body, [(b"connection", b"close")])


async def _busy(send: Send) -> None:
    body = error_body("busy", "the node is serving as many requests as it may; retry later")
    await send_json(send, 503, body, [(b"retry-after", b"1"), (b"connection", b"close")])
