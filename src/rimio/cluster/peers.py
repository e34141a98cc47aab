"""`PeerClient`: this node's pooled HTTP client for talking to other nodes.

It is the reverse proxy that forwards a client's request to the node that
holds the slot (filtering headers both ways, refusing a request that was
already forwarded once, streaming the body both ways), and it reads other
nodes' heads for cluster-wide listings. Internal requests are signed with the
cluster key when there is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from rimio.core.errors import Busy, MalformedHead, QuorumLost
from rimio.core.head import Head
from rimio.core.keyring import KeyRing
from rimio.core.replica import RESYNCING_HEADER
from rimio.net.http import signed_headers

HEADS_PATH = "/internal/v1/heads"
FORWARDED_BY = "X-Rimio-Forwarded-By"
# What a forwarded request and its answer carry across; hop-by-hop headers
# (Connection, Transfer-Encoding, Host, ...) belong to each hop and stay.
# The client's token goes along: the holder checks it against the same
# access section (`rimio.api.access`).
FORWARD_REQUEST_HEADERS = frozenset({
    "content-length", "content-type", "range", "if-range", "if-match", "if-none-match",
    "x-rimio-write-id", "authorization",
})
FORWARD_RESPONSE_HEADERS = frozenset({
    "content-type", "etag", "x-rimio-generation", "accept-ranges", "content-range",
    "content-length",
})


@dataclass(frozen=True, slots=True)
class ForwardedResponse:
    """The answer of the node a request was forwarded to.

    `headers` are already filtered (lower-case names). `body` streams the
    answer and closes the upstream connection when exhausted or closed; it is
    None when the answer has no body (HEAD), the upstream being closed already.
    """

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes] | None


def forward_headers(headers: Iterable[tuple[str, str]], via: str) -> dict[str, str]:
    """The headers a forwarded request carries: the end-to-end ones the object
    API reads, plus who forwarded it. Raises QuorumLost on a request that was
    forwarded already: the sender thought this node holds the slot, this node
    thinks another does, and a second hop could loop."""
    out: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == FORWARDED_BY.lower() and value:
            raise QuorumLost("the nodes disagree on where this object lives (misrouted)")
        if lower in FORWARD_REQUEST_HEADERS:
            out[name] = value
    out[FORWARDED_BY] = via
    return out


class ForwardPoolExhausted(Busy):
    """Every pooled connection to other nodes stayed busy for the pool timeout."""


class PeerClient:
    """`max_connections` bounds the connections to other nodes (forwarded
    requests and listings share them); a request that waits `pool_timeout`
    seconds for one is refused with `ForwardPoolExhausted` (503). `transport`
    replaces the network (the simulator's in-memory one)."""

    def __init__(self, keyring: KeyRing | None, *, connect_timeout: float = 2.0,
                 read_timeout: float = 60.0, max_connections: int = 64,
                 pool_timeout: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._keyring = keyring
        # whether this node re-syncs (RFC 0015 §4); the node sets it
        self.resyncing: Callable[[], bool] = lambda: False
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=pool_timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def list_heads(self, address: str, prefix: str, after: str | None,
                         limit: int, *, node_id: str) -> list[Head]:
        """The current heads (tombstones included) after `after` of the node
        `node_id` at `address` (the request is signed for that node).

        Whatever goes wrong is the peer's fault, not the client's: an
        unreachable peer, an error answer and a malformed listing all raise
        QuorumLost (the listing cannot be complete without that node)."""
        params = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            params["after"] = after
        target = f"{HEADS_PATH}?{urlencode(params)}"
        try:
            resp = await self._client.get(f"http://{address}{target}",
                                          headers=signed_headers(self._keyring, "GET", target,
                                                                 b"", destination=node_id))
        except httpx.PoolTimeout:
            raise ForwardPoolExhausted("every connection to other nodes is busy") from None
        except httpx.HTTPError as exc:
            raise QuorumLost(f"listing needs {address}, which is unreachable "
                             f"({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise QuorumLost(f"listing needs {address}, which answered {resp.status_code}")
        try:
            return [Head.from_dict(h) for h in resp.json()["heads"]]
        except MalformedHead as exc:
            raise QuorumLost(f"{address} sent a malformed head in its listing ({exc})") from None
        except (ValueError, KeyError, TypeError):
            # not JSON, no "heads", or "heads" not a list
            raise QuorumLost(f"{address} sent a malformed listing") from None

    async def send_signed(self, address: str, method: str, target: str, *, node_id: str,
                          body: bytes | AsyncIterable[bytes] = b"",
                          headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send an internal request signed for the node `node_id` at `address`
        (`target`: path and query, already encoded) and return its answer,
        streaming: the caller reads and closes it. A body given as an async
        iterable streams out as it is produced (signed as a streamed body).
        httpx errors pass through as they are, for the caller to name."""
        signed = signed_headers(self._keyring, method, target,
                                body if isinstance(body, bytes) else None, destination=node_id)
        if headers:
            signed.update(headers)
        if self.resyncing():
            signed[RESYNCING_HEADER] = "1"
        req = self._client.build_request(method, f"http://{address}{target}", headers=signed,
                                         content=body)
        return await self._client.send(req, stream=True)

    async def forward(self, address: str, method: str, raw_target: str,
                      headers: Iterable[tuple[str, str]], body: AsyncIterator[bytes] | None,
                      *, via: str) -> ForwardedResponse:
        """Send a client's request on to `address` and return its answer, streaming.

        `headers` are the client's (filtered here); `via` is this node's id,
        sent as FORWARDED_BY. The caller must exhaust or close the returned body.
        """
        sent_headers = forward_headers(headers, via)
        req = self._client.build_request(method, f"http://{address}{raw_target}",
                                         headers=sent_headers, content=body)
        try:
            upstream = await self._client.send(req, stream=True)
        except httpx.PoolTimeout:
            raise ForwardPoolExhausted("every connection to other nodes is busy") from None
        except httpx.HTTPError as exc:
            raise QuorumLost(f"the node holding this object ({address}) is unreachable "
                             f"({type(exc).__name__})") from None
        out_headers = {k.lower(): v for k, v in upstream.headers.items()
                       if k.lower() in FORWARD_RESPONSE_HEADERS}
        if method == "HEAD":
            await upstream.aclose()
            return ForwardedResponse(upstream.status_code, out_headers, None)
        return ForwardedResponse(upstream.status_code, out_headers, _stream(upstream))


async def _stream(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream body as it arrives (undecoded), closing the upstream when done."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    finally:
        await upstream.aclose()
