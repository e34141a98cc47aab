"""The transport interface the membership service talks through.

Two implementations: `rimio.net.http.HttpTransport` (the node's one HTTP port,
pooled connections) and the simulated network of `rimio.testing` for tests.
Inbound traffic is not part of this interface: whoever owns the receiving
side (an HTTP route, a simulated link) hands packets to the membership
service's `deliver_packet` / `answer_stream`.
"""

from __future__ import annotations

from typing import Protocol


class TransportError(Exception):
    """A packet or stream could not be delivered (timeout, refused, 4xx/5xx)."""


class Transport(Protocol):
    """`node` names the member expected at `address` (requests are signed for
    it); None when only the address is known (a seed while joining)."""

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        """Deliver one small datagram-like message; best effort, bounded time."""

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        """One request/response exchange (push-pull); raises TransportError."""

    async def aclose(self) -> None:
        """Release pooled connections."""
