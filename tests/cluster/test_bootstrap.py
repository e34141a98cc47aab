from pathlib import Path
from typing import Any

import pytest

from rimio.cluster.bootstrap import BootstrapInfo, config_from_bootstrap, parse_cluster_url
from rimio.config import Address
from rimio.errors import ConfigError


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
