"""`HttpTransport`: gossip over the node's one HTTP port.

Packets are `POST /internal/v1/gossip/packet`, push-pull exchanges
`POST /internal/v1/gossip/stream` (request/response), both with an
`application/msgpack` body that is sealed with the cluster key ring when one
is configured, and every request is signed (`rimio.core.auth`) for the node
expected at the address (`ANY_DESTINATION` for a seed not known yet, which
only the push-pull endpoint accepts). The `from=` query parameter only names
the sender for logs: no receiver sends anything to it. Connections
are pooled by one `httpx.AsyncClient`, so a probe does not pay a TCP
handshake.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from rimio.core.auth import ANY_DESTINATION, sign
from rimio.core.keyring import KeyRing
from rimio.net.transport import TransportError

PACKET_PATH = "/internal/v1/gossip/packet"
STREAM_PATH = "/internal/v1/gossip/stream"
CONTENT_TYPE = "application/msgpack"


def signed_headers(keyring: KeyRing | None, method: str, target: str, body: bytes | None, *,
                   destination: str, wall_clock: Callable[[], float] = time.time
                   ) -> dict[str, str]:
    """Headers of an internal request to the node `destination` (its id, or
    `ANY_DESTINATION` where the route allows it), signed when keyed; `body`
    None for a streamed body (`rimio.core.auth.STREAMED_BODY`)."""
    headers = {"Content-Type": CONTENT_TYPE}
    if keyring is not None:
        headers.update(sign(keyring.primary_mac_key, method, target, body, wall_clock(),
                            destination=destination))
    return headers


class HttpTransport:
    """Gossip over HTTP from the node at `address` (the `from` of every request)."""

    def __init__(self, address: str, *, keyring: KeyRing | None = None,
                 packet_timeout: float = 1.0, stream_timeout: float = 10.0,
                 max_connections: int = 64) -> None:
        self._address = address
        self._keyring = keyring
        self._packet_timeout = packet_timeout
        self._stream_timeout = stream_timeout
        self._closed = False
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(stream_timeout),
        )

    @property
    def address(self) -> str:
        return self._address

    async def _post(self, address: str, path: str, data: bytes, seconds: float,
                    node: str | None) -> bytes:
        if self._closed:
            raise TransportError(f"{address}: the transport is closed")
        target = f"{path}?from={self._address}"
        headers = signed_headers(self._keyring, "POST", target, data,
                                 destination=node or ANY_DESTINATION)
        try:
            resp = await self._client.post(f"http://{address}{target}", content=data,
                                           headers=headers, timeout=seconds)
        except httpx.HTTPError as exc:
            raise TransportError(f"{address}: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise TransportError(f"{address}: HTTP {resp.status_code}")
        return resp.content

    async def send_packet(self, address: str, data: bytes, *, node: str | None = None) -> None:
        await self._post(address, PACKET_PATH, data, self._packet_timeout, node)

    async def request_stream(self, address: str, data: bytes, *, node: str | None = None
                             ) -> bytes:
        return await self._post(address, STREAM_PATH, data, self._stream_timeout, node)

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()
