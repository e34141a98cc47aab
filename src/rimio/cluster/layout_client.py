"""`LayoutClient`: sends this node's layout frame to another node and reads its answer.

`POST /internal/v1/layout` with the msgpack layout frame as body, signed for
the receiving node's id (a layout is only ever exchanged between members);
the answer is the receiver's layout after it merged ours. Whatever goes
wrong (unreachable, refused, timed out) is one `LayoutExchangeError`.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from rimio.core.keyring import KeyRing
from rimio.net.http import signed_headers

LAYOUT_PATH = "/internal/v1/layout"


class LayoutExchangeError(Exception):
    """The other node did not take part in the exchange."""


class LayoutClient:
    def __init__(self, keyring: KeyRing | None, *, source: str = "",
                 timeout: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`source` (this node's id) goes along as `?from=`, so the receiver
        does not push the news it learns back to us."""
        self._keyring = keyring
        self._target = f"{LAYOUT_PATH}?{urlencode({'from': source})}" if source else LAYOUT_PATH
        # `transport`: the simulated network of `rimio.testing.chaos`.
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                         limits=httpx.Limits(max_connections=16))

    async def exchange(self, address: str, node_id: str, frame: bytes) -> bytes:
        """Send `frame` to node `node_id` at `address`; its merged layout frame."""
        headers = signed_headers(self._keyring, "POST", self._target, frame,
                                 destination=node_id)
        try:
            resp = await self._client.post(f"http://{address}{self._target}", content=frame,
                                           headers=headers)
        except httpx.HTTPError as exc:
            raise LayoutExchangeError(f"{node_id} at {address}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise LayoutExchangeError(f"{node_id} at {address}: HTTP {resp.status_code} "
                                      f"{resp.text[:200]}")
        return resp.content

    async def aclose(self) -> None:
        await self._client.aclose()
