"""`rimio admin decommission NODE --via URL`: drain a node and wait until it holds nothing.

The node at `via` is asked (`POST /internal/v1/layout/decommission`, signed
with the cluster key for that node's id, learnt from its `healthz`) to mark
NODE `draining`; the layout spreads from there and the movers copy NODE's
slots to their new targets. Progress is then read from the public API
(`GET /api/v1/cluster`, `GET /api/v1/nodes`) until NODE's role is `removed`
(it holds no slot any more): the node can be stopped.

Every failure is a `ConfigError` with one line that says what went wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import trio

from rimio.core.keyring import KeyRing
from rimio.errors import ConfigError
from rimio.net.http import signed_headers

DECOMMISSION_PATH = "/internal/v1/layout/decommission"


async def _json(client: httpx.AsyncClient, method: str, url: str, what: str,
                **kwargs: Any) -> dict[str, Any]:
    try:
        resp = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ConfigError(f"{what}: {url} is unreachable ({type(exc).__name__})") from None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code != 200:
        message = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = f": {body['error'].get('message', '')}"
        hint = " (check --key-file)" if resp.status_code == 401 and "internal" in url else ""
        hint = hint or (" (pass a token with --token)" if resp.status_code in (401, 403)
                        else "")
        raise ConfigError(f"{what}: HTTP {resp.status_code}{message}{hint}")
    if not isinstance(body, dict):
        raise ConfigError(f"{what}: {url} answered something that is not a JSON object")
    return body


async def decommission(node_id: str, via: str, keyring: KeyRing | None, *,
                       token: str | None = None, interval: float = 2.0,
                       give_up_after: float | None = None,
                       report: Callable[[str], None] = lambda line: None) -> None:
    """Drain `node_id` through the node at URL `via`; return once it holds no slot."""
    base = via.rstrip("/")
    public = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10.0) as client:
        health = await _json(client, "GET", f"{base}/api/v1/healthz", "asking who serves --via")
        via_id = health.get("node_id")
        if not isinstance(via_id, str):
            raise ConfigError(f"{base} does not look like a rimio node")
        body = json.dumps({"node_id": node_id}).encode()
        headers = signed_headers(keyring, "POST", DECOMMISSION_PATH, body, destination=via_id)
        headers["Content-Type"] = "application/json"
        await _json(client, "POST", f"{base}{DECOMMISSION_PATH}",
                    f"decommissioning {node_id}", content=body, headers=headers)
        report(f"{node_id} is draining; waiting until it holds no slot")
        try:
            with trio.fail_after(give_up_after if give_up_after else float("inf")):
                await _wait_drained(client, base, via_id, node_id, public, interval, report)
        except trio.TooSlowError:
            raise ConfigError(f"{node_id} still holds slots after {give_up_after:g} s; it keeps "
                              "draining, run the command again to follow it") from None


async def _wait_drained(client: httpx.AsyncClient, base: str, via_id: str, node_id: str,
                        public: dict[str, str], interval: float,
                        report: Callable[[str], None]) -> None:
    last = ""
    while True:
        cluster = await _json(client, "GET", f"{base}/api/v1/cluster",
                              "reading the cluster state", headers=public)
        nodes = await _json(client, "GET", f"{base}/api/v1/nodes",
                            "reading the nodes", headers=public)
        mine = [n for n in nodes.get("nodes", [])
                if isinstance(n, dict) and n.get("node_id") == node_id]
        if not mine:
            raise ConfigError(f"{via_id} no longer lists {node_id}")
        role, slots = mine[0].get("role"), mine[0].get("slots")
        line = (f"{node_id}: {role}, holds {slots} slot replicas; "
                f"{cluster.get('moving_slots')} slots moving "
                f"(layout version {cluster.get('layout_version')})")
        if line != last:
            report(line)
            last = line
        if role == "removed" or (role == "draining" and slots == 0
                                 and cluster.get("moving_slots") == 0):
            return
        await trio.sleep(interval)
