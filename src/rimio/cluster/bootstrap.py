"""Joining an existing cluster: read its bootstrap state from any seed.

`rimio join cluster://h:p,h:p --node ID ...` asks the seeds, one after the
other, for `GET /internal/v1/cluster/bootstrap` and
`GET /internal/v1/cluster/gossip-seeds`, checks that the node id is free, and
builds the joining node's configuration from the answer. A seed is known only
by its address, so these requests are signed for `ANY_DESTINATION`, which
these two read-only routes accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rimio.config import (
    Address,
    ClusterConfig,
    NodeConfig,
    NodeSpec,
    ReplicationConfig,
    StorageConfig,
    parse_config,
)
from rimio.core.auth import ANY_DESTINATION
from rimio.core.frames import Status
from rimio.core.keyring import KeyRing
from rimio.errors import ConfigError
from rimio.net.http import signed_headers

BOOTSTRAP_PATH = "/internal/v1/cluster/bootstrap"
SEEDS_PATH = "/internal/v1/cluster/gossip-seeds"


def parse_cluster_url(url: str) -> list[str]:
    """`cluster://h:p,h:p` → `["h:p", "h:p"]` (each checked as an address)."""
    prefix = "cluster://"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(f"expected cluster://host:port[,host:port...], got {url!r}")
    seeds = [s.strip() for s in url[len(prefix):].rstrip("/").split(",") if s.strip()]
    for seed in seeds:
        Address.parse(seed, "cluster URL")
    if not seeds:
        raise ConfigError("the cluster URL names no seed")
    return seeds


@dataclass(frozen=True, slots=True)
class BootstrapInfo:
    state: dict[str, Any]
    seeds: list[str]
    source: str


async def fetch_bootstrap(seeds: list[str], keyring: KeyRing | None,
                          per_seed_seconds: float = 3.0) -> BootstrapInfo:
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=per_seed_seconds) as client:
        for seed in seeds:
            try:
                state = await _get_json(client, seed, BOOTSTRAP_PATH, keyring)
                gossip = await _get_json(client, seed, SEEDS_PATH, keyring)
            except _SeedError as exc:
                problems.append(f"{seed}: {exc}")
                continue
            found = [s for s in gossip.get("seeds", []) if isinstance(s, str)]
            return BootstrapInfo(state, found or [seed], seed)
    raise ConfigError("no seed answered: " + "; ".join(problems))


class _SeedError(Exception):
    pass


async def _get_json(client: httpx.AsyncClient, seed: str, path: str,
                    keyring: KeyRing | None) -> dict[str, Any]:
    try:
        resp = await client.get(f"http://{seed}{path}",
                                headers=signed_headers(keyring, "GET", path, b"",
                                                       destination=ANY_DESTINATION))
    except httpx.HTTPError as exc:
        raise _SeedError(f"unreachable ({type(exc).__name__})") from None
    if resp.status_code == 401:
        raise _SeedError("refused us (401): the cluster needs its key, see --key-file")
    if resp.status_code != 200:
        raise _SeedError(f"answered HTTP {resp.status_code}")
    try:
        body = resp.json()
    except ValueError:
        raise _SeedError("answered something that is not JSON") from None
    if not isinstance(body, dict):
        raise _SeedError("answered an unexpected document")
    return body


def config_from_bootstrap(info: BootstrapInfo, node_id: str, listen: Address,
                          advertise: Address, disk: Path,
                          key_file: Path | None) -> NodeConfig:
    """The joining node's configuration; refuses a node id that is taken."""
    state = info.state
    members = state.get("members", [])
    for m in members if isinstance(members, list) else []:
        if not isinstance(m, dict) or m.get("node_id") != node_id:
            continue
        if _counts_as_alive(m.get("status")) and m.get("address") != str(advertise):
            raise ConfigError(f"node id {node_id!r} is already alive in the cluster at "
                              f"{m.get('address')}; choose another id")
    # Re-validate what the seed sent with the same rules as a config file.
    layout = state.get("layout", [])
    if not isinstance(layout, list):
        raise ConfigError(f"seed {info.source} sent a malformed layout")
    nodes = [{"node_id": n.get("node_id"), "bind_addr": n.get("address"),
              "disks": [{"path": "/unused"}]} for n in layout if isinstance(n, dict)]
    if not any(n["node_id"] == node_id for n in nodes):
        nodes.append({"node_id": node_id, "bind_addr": str(advertise),
                      "disks": [{"path": str(disk)}]})
    raw: dict[str, Any] = {
        "cluster": {"name": state.get("cluster")},
        "initial_cluster": {"nodes": nodes, "replication": _clean(state.get("replication"))},
        "storage": _clean(state.get("storage")),
    }
    if state.get("membership"):
        raw["membership"] = state["membership"]
    if state.get("access") is not None:
        raw["access"] = state["access"]
    try:
        parsed = parse_config(raw, base_dir=Path("/"))
    except ConfigError as exc:
        raise ConfigError(f"seed {info.source} sent an unusable cluster state: {exc}") from None
    if state.get("keyed") and key_file is None:
        raise ConfigError("the cluster uses a key; pass it with --key-file")
    spec = NodeSpec(node_id, listen, advertise, (disk,))
    others = tuple(n for n in parsed.nodes if n.node_id != node_id)
    cluster = ClusterConfig(
        name=parsed.name, nodes=(*others, spec),
        replication=ReplicationConfig(parsed.replication.replicas,
                                      parsed.replication.min_write_replicas,
                                      parsed.replication.total_slots),
        storage=StorageConfig(part_size_bytes=parsed.storage.part_size_bytes,
                              max_object_bytes=parsed.storage.max_object_bytes),
        key_file=key_file,
        # Without a key file the seed said the cluster has no key (checked
        # above): the joiner runs keyless knowingly, like its peers.
        insecure=key_file is None,
        membership=parsed.membership,
        access=parsed.access,
    )
    return NodeConfig(cluster=cluster, spec=spec)


def _counts_as_alive(status: Any) -> bool:
    """Whether a seed reports a member as alive (suspects count); unknown is not."""
    try:
        return Status(status).counts_as_alive
    except ValueError:
        return False


def _clean(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if v is not None}
