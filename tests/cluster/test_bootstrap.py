import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from rimio.cluster.bootstrap import (
    BootstrapInfo,
    config_from_bootstrap,
    fetch_bootstrap,
    parse_cluster_url,
)
from rimio.config import AccessConfig, AccessToken, Address, Scope, single_node_config
from rimio.errors import ConfigError
from rimio.node import Node


def _state(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "cluster": "edge",
        "replication": {"replicas": 3, "min_write_replicas": None, "total_slots": 1024},
        "storage": {"part_size_bytes": 65536, "max_object_bytes": 1 << 30},
        "membership": {"probe_interval": 0.5, "probe_timeout": 0.25},
        "layout": [{"node_id": "node-1", "address": "10.0.0.1:19080"},
                   {"node_id": "node-2", "address": "10.0.0.2:19080"}],
        "members": [{"node_id": "node-1", "address": "10.0.0.1:19080", "status": "alive",
                     "incarnation": 0},
                    {"node_id": "old", "address": "10.0.0.9:19080", "status": "dead",
                     "incarnation": 3}],
        "slot_epoch": 1,
        "keyed": False,
    }
    state.update(changes)
    return state


def _join(state: dict[str, Any], node_id: str = "node-3",
          key: Path | None = None) -> Any:
    info = BootstrapInfo(state, ["10.0.0.1:19080"], "10.0.0.1:19080")
    addr = Address("10.0.0.3", 19080)
    return config_from_bootstrap(info, node_id, addr, addr, Path("/data"), key)


def test_parse_cluster_url() -> None:
    assert parse_cluster_url("cluster://a:1,b:2/") == ["a:1", "b:2"]
    for bad in ("http://a:1", "cluster://", "cluster://a", "cluster://a:x"):
        with pytest.raises(ConfigError):
            parse_cluster_url(bad)


def test_joiner_takes_the_cluster_settings() -> None:
    cfg = _join(_state())
    c = cfg.cluster
    assert c.name == "edge" and c.replication.total_slots == 1024
    assert c.storage.part_size_bytes == 65536
    assert dict(c.membership)["probe_interval"] == 0.5
    assert [n.node_id for n in c.nodes] == ["node-1", "node-2", "node-3"]
    assert cfg.spec.disks == (Path("/data"),)


def test_a_dead_members_id_may_be_reused_but_not_a_live_one() -> None:
    assert _join(_state(), node_id="old").node_id == "old"
    with pytest.raises(ConfigError, match="already alive"):
        _join(_state(), node_id="node-1")


@pytest.mark.parametrize("changes", [{"cluster": 5}, {"layout": "nope"},
                                     {"replication": {"replicas": 0}},
                                     {"membership": {"probe_interval": -1}}])
def test_malformed_bootstrap_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"unusable|malformed"):
        _join(_state(**changes))


def test_keyed_cluster_needs_a_key_file() -> None:
    with pytest.raises(ConfigError, match="key-file"):
        _join(_state(keyed=True))


def test_joiner_takes_the_clusters_client_tokens() -> None:
    """A joined node guards its API with the same tokens as the founders."""
    assert _join(_state()).cluster.access is None
    digest = "ab" * 32
    tokens = {"tokens": [{"name": "app", "sha256": digest, "scope": "read"}]}
    access = _join(_state(access=tokens)).cluster.access
    assert access is not None and [t.name for t in access.tokens] == ["app"]
    assert access.tokens[0].sha256 == bytes.fromhex(digest)
    assert access.tokens[0].scope.value == "read"
    with pytest.raises(ConfigError, match="access"):
        _join(_state(access={"tokens": [{"name": "app", "sha256": "zz", "scope": "read"}]}))


async def test_bootstrap_state_carries_token_digests_not_tokens(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "d")
    token = "s3cret-token"
    access = AccessConfig((AccessToken("app", hashlib.sha256(token.encode()).digest(),
                                       Scope.WRITE),))
    config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster,
                                                                     access=access))
    async with Node(config) as node:
        info = await fetch_bootstrap([str(node.address)], None)
    assert info.state["access"]["tokens"][0]["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(info.state)
    joined = config_from_bootstrap(info, "node-9", Address("127.0.0.1", 1),
                                   Address("127.0.0.1", 1), tmp_path / "j", None)
    assert joined.cluster.access == access
