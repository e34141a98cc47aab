"""`HttpTransport`: gossip over the node's one HTTP port.

Packets are `POST /internal/v1/gossip/packet`, push-pull exchanges
`POST /internal/v1/gossip/stream` (request/response), both with an
`application/msgpack` body that is sealed with the cluster key ring when one
is configured, and every request is signed (`rimio.core.auth`). Connections
are pooled by one `httpx.AsyncClient`, so a probe does not pay a TCP
handshake.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from rimio.core.auth import sign
from rimio.core.keyring import KeyRing
from rimio.net.transport import TransportError

PACKET_PATH = "/internal/v1/gossip/packet"
STREAM_PATH = "/internal/v1/gossip/stream"
CONTENT_TYPE = "application/msgpack"


def signed_headers(keyring: KeyRing | None, method: str, target: str, body: bytes,
                   wall_clock: Callable[[], float] = time.time) -> dict[str, str]:
    headers = {"Content-Type": CONTENT_TYPE}
    if keyring is not None:
        headers.update(sign(keyring.primary_mac_key, method, target, body, wall_clock()))
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

    async def _post(self, address: str, path: str, data: bytes, seconds: float) -> bytes:
        if self._closed:
            raise TransportError(f"{address}: the transport is closed")
        target = f"{path}?from={self._address}"
        headers = signed_headers(self._keyring, "POST", target, data)
        try:
            resp = await self._client.post(f"http://{address}{target}", content=data,
                                           headers=headers, timeout=seconds)
        except httpx.HTTPError as exc:
            raise TransportError(f"{address}: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise TransportError(f"{address}: HTTP {resp.status_code}")
        return resp.content

    async def send_packet(self, address: str, data: bytes) -> None:
        await self._post(address, PACKET_PATH, data, self._packet_timeout)

    async def request_stream(self, address: str, data: bytes) -> bytes:
        return await self._post(address, STREAM_PATH, data, self._stream_timeout)

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()
