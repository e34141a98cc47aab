"""The transport interface the membership service talks through.

Two implementations: `rimio.net.http.HttpTransport` (the node's one HTTP port,
pooled connections) and the in-process transports of `rimio.testing`.
A transport is built with the address it sends from (its node's gossip
address), which the receiving side learns with every packet.

Inbound traffic is not part of `Transport`: whoever owns the receiving side
(an HTTP route, an in-process link) hands packets to a `Receiver` — the
membership service's `deliver_packet` / `answer_stream`.
"""

from __future__ import annotations

from typing import Protocol


class TransportError(Exception):
    """A packet or stream could not be delivered (timeout, refused, 4xx/5xx)."""


class Transport(Protocol):
    """`node` names the member expected at `address` (requests are signed for
    it); None when only the address is known (a seed while joining)."""

    @property
    def address(self) -> str:
        """The address this transport sends from, fixed at construction."""

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        """Deliver one small datagram-like message; best effort, bounded time.

        Raises TransportError when the transport knows the packet was not
        delivered; a lost packet may also go unnoticed.
        """

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        """One request/response exchange (push-pull); raises TransportError.

        An empty reply means the receiver had nothing to answer.
        """

    async def aclose(self) -> None:
        """Release pooled connections; idempotent. Sending afterwards raises
        TransportError."""


class Receiver(Protocol):
    """The receiving end of a transport (the membership service)."""

    def deliver_packet(self, from_addr: str, data: bytes, received_at: float) -> None:
        """A packet from `from_addr` arrived at trio time `received_at`."""

    def answer_stream(self, from_addr: str, data: bytes, received_at: float) -> bytes | None:
        """A push-pull request arrived; the reply, if any."""
