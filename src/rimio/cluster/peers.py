"""`PeerClient`: this node's pooled HTTP client for talking to other nodes.

It forwards a client's request to the node that holds the slot (streaming
the body both ways) and reads other nodes' heads for cluster-wide listings.
Internal requests are signed with the cluster key when there is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlencode

import httpx

from rimio.core.head import Head
from rimio.core.keyring import KeyRing
from rimio.errors import QuorumLost
from rimio.net.http import signed_headers

HEADS_PATH = "/internal/v1/heads"
FORWARDED_BY = "X-Rimio-Forwarded-By"


class PeerClient:
    def __init__(self, keyring: KeyRing | None, *, connect_timeout: float = 2.0,
                 read_timeout: float = 60.0, max_connections: int = 64) -> None:
        self._keyring = keyring
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def list_heads(self, address: str, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        params = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            params["after"] = after
        target = f"{HEADS_PATH}?{urlencode(params)}"
        try:
            resp = await self._client.get(f"http://{address}{target}",
                                          headers=signed_headers(self._keyring, "GET", target,
                                                                 b""))
        except httpx.HTTPError as exc:
            raise QuorumLost(f"listing needs {address}, which is unreachable "
                             f"({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise QuorumLost(f"listing needs {address}, which answered {resp.status_code}")
        try:
            return [Head.from_dict(h) for h in resp.json()["heads"]]
        except (ValueError, KeyError, TypeError):
            raise QuorumLost(f"{address} sent a malformed listing") from None

    async def forward(self, address: str, method: str, raw_target: str,
                      headers: Mapping[str, str],
                      body: AsyncIterator[bytes] | None) -> httpx.Response:
        """Send the request on and return the streaming response (caller closes it)."""
        req = self._client.build_request(method, f"http://{address}{raw_target}",
                                         headers=dict(headers), content=body)
        try:
            return await self._client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise QuorumLost(f"the node holding this object ({address}) is unreachable "
                             f"({type(exc).__name__})") from None
