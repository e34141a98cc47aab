import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from rimio.config import (
    CONFIG_FILE,
    REPAIR_SECTION,
    REPLICATION_SECTION,
    SERVER_SECTION,
    STORAGE_SECTION,
    AccessConfig,
    AccessToken,
    RepairConfig,
    ReplicationConfig,
    Scope,
    ServerConfig,
    StorageConfig,
    load_config,
    parse_config,
)
from rimio.core.schema import Section
from rimio.errors import ConfigError

BASE: dict[str, Any] = {
    "cluster": {"name": "edge"},
    "initial_cluster": {
        "nodes": [
            {"node_id": "node-1", "bind_addr": "127.0.0.1:19080",
             "advertise_addr": "127.0.0.1:19080", "disks": [{"path": "d1"}]},
            {"node_id": "node-2", "bind_addr": "127.0.0.1:19081", "disks": [{"path": "/abs/d2"}]},
        ],
        "replication": {"replicas": 3, "min_write_replicas": 2, "total_slots": 2048},
    },
}


def _with(**changes: Any) -> dict[str, Any]:
    import copy

    cfg = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target = cfg
        keys = dotted.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if value is ...:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return cfg


def test_parses_the_design_example(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(BASE))
    cfg = load_config(f)
    assert cfg.name == "edge"
    assert [n.node_id for n in cfg.nodes] == ["node-1", "node-2"]
    assert cfg.nodes[0].disks == (tmp_path / "d1",)
    assert cfg.nodes[1].disks == (Path("/abs/d2"),)
    assert str(cfg.nodes[1].advertise_addr) == "127.0.0.1:19081"
    assert cfg.effective_replicas == 2
    assert cfg.write_quorum == 2
    assert cfg.node("node-2").spec.bind_addr.port == 19081


def test_default_quorum_is_majority() -> None:
    cfg = parse_config(_with(initial_cluster__replication={"replicas": 3}), Path("/"))
    assert cfg.effective_replicas == 2 and cfg.write_quorum == 2


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"cluster": ...}, "missing required key 'cluster'"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({"cluster__name": ""}, "cluster.name"),
        ({"initial_cluster__nodes": []}, "non-empty list"),
        ({"initial_cluster__nodes__0__bind_addr": "nowhere"}, "host:port"),
        ({"initial_cluster__nodes__0__bind_addr": "h:70000"}, "out of range"),
        ({"initial_cluster__nodes__0__disks": []}, "disks"),
        ({"initial_cluster__nodes__1__node_id": "node-1"}, "appears twice"),
        ({"initial_cluster__nodes__1__bind_addr": "127.0.0.1:19080"}, "used by two nodes"),
        ({"initial_cluster__replication__replicas": 0}, "replication.replicas"),
        ({"initial_cluster__replication__min_write_replicas": 3}, "min_write_replicas"),
        ({"initial_cluster__replication__total_slots": "many"}, "expected an integer"),
        ({"storage": {"part_size_bytes": 1}}, "part_size_bytes"),
    ],
)
def test_bad_configs_name_the_problem(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(**changes), Path("/"))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_node_id() -> None:
    cfg = parse_config(BASE, Path("/"))
    with pytest.raises(ConfigError, match="unknown node id 'node-9'"):
        cfg.node("node-9")


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"storage": {"io_threads": 0}}, "storage.io_threads: 0 is outside 1..256"),
        ({"storage": {"io_threads": True}}, "storage.io_threads: expected an integer, got True"),
        ({"storage": {"gc_grace_seconds": "soon"}},
         "storage.gc_grace_seconds: expected a number, got 'soon'"),
        ({"server": {"colour": 1}}, "server: unknown key 'colour'"),
        ({"server": []}, "server: expected a mapping"),
        ({"membership": {"awareness": 1}}, "membership.awareness: expected true or false, got 1"),
        ({"initial_cluster__nodes__1__disks": [{}]},
         "initial_cluster.nodes[1].disks[0]: missing required key 'path'"),
        ({"initial_cluster__nodes__0__node_id": "a b"},
         "initial_cluster.nodes[0].node_id: use letters, digits, '.', '_' or '-' (max 63)"),
        ({"initial_cluster__replication__min_write_replicas": 3},
         "initial_cluster.replication.min_write_replicas: 3 is outside 1..2"),
        ({"repair": {"interval_seconds": 60, "tombstone_retention_seconds": 300}},
         "repair.tombstone_retention_seconds: 300 must be at least 10 times "
         "repair.interval_seconds (60)"),
    ],
)
def test_errors_name_the_dotted_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(**changes), Path("/"))
    assert str(info.value) == message


def test_sections_and_defaults() -> None:
    cfg = parse_config(_with(storage={"io_threads": 2}, server={"max_header_bytes": 2048},
                             membership={"probe_interval": 2, "awareness": False},
                             initial_cluster__replication__min_write_replicas=None),
                       Path("/"))
    assert cfg.storage == StorageConfig(io_threads=2)
    assert cfg.server == ServerConfig(max_header_bytes=2048)
    assert cfg.replication == ReplicationConfig(replicas=3, total_slots=2048)
    assert cfg.membership == (("awareness", False), ("probe_interval", 2.0))
    swim = cfg.swim_config()
    assert swim.cluster == "edge" and swim.probe_interval == 2.0 and not swim.awareness
    assert cfg.nodes[0].advertise_addr == cfg.nodes[0].bind_addr


@pytest.mark.parametrize(
    ("section", "target"),
    [(STORAGE_SECTION, StorageConfig), (SERVER_SECTION, ServerConfig),
     (REPLICATION_SECTION, ReplicationConfig), (REPAIR_SECTION, RepairConfig)],
)
def test_section_tables_match_their_dataclasses(section: Section, target: type) -> None:
    # Defaults live in the dataclasses: every option must be one of their fields.
    assert [o.name for o in section.options] == [f.name for f in dataclasses.fields(target)]


def test_scrub_options_parse_and_default() -> None:
    assert parse_config(BASE, Path("/")).repair == RepairConfig(
        scrub_bytes_per_second=8 * 1024 * 1024, scrub_interval_seconds=86400.0)
    cfg = parse_config(_with(repair={"scrub_bytes_per_second": 0,
                                     "scrub_interval_seconds": 3600}), Path("/"))
    assert (cfg.repair.scrub_bytes_per_second, cfg.repair.scrub_interval_seconds) == (0, 3600.0)
    with pytest.raises(ConfigError, match=r"repair\.scrub_bytes_per_second"):
        parse_config(_with(repair={"scrub_bytes_per_second": -1}), Path("/"))


def test_every_option_has_help() -> None:
    lines = CONFIG_FILE.help_lines()
    assert "storage.io_threads: integer 1..256 — threads doing blocking disk work" in lines
    assert any(line.startswith("initial_cluster.nodes[].disks[].path: path, required")
               for line in lines)
    assert all(not line.endswith("— ") for line in lines)


# -- cluster.insecure, the key requirement and the access section ----------------

_DIGEST = "ab" * 32


def test_insecure_parses_and_defaults_to_false() -> None:
    assert parse_config(BASE, Path("/")).insecure is False
    assert parse_config(_with(cluster__insecure=True), Path("/")).insecure is True


def test_several_nodes_need_a_key_file_unless_insecure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE, Path("/")).check_keyed()
    assert str(info.value).startswith("cluster.key_file: a cluster of 2 nodes needs a key file")
    assert "cluster.insecure" in str(info.value) and "\n" not in str(info.value)
    parse_config(_with(cluster__insecure=True), Path("/")).check_keyed()
    key = tmp_path / "cluster.key"
    key.write_text("cd" * 32 + "\n")
    parse_config(_with(cluster__key_file=str(key)), Path("/")).check_keyed()
    one = _with(initial_cluster__nodes=BASE["initial_cluster"]["nodes"][:1],
                initial_cluster__replication={"replicas": 1})
    parse_config(one, Path("/")).check_keyed()  # a single node needs no key


def test_access_section_parses() -> None:
    tokens = [{"name": "app", "sha256": _DIGEST.upper(), "scope": "write"},
              {"name": "dash", "sha256": "cd" * 32, "scope": "read"}]
    cfg = parse_config(_with(access={"tokens": tokens}), Path("/"))
    assert cfg.access == AccessConfig((AccessToken("app", bytes.fromhex(_DIGEST), Scope.WRITE),
                                       AccessToken("dash", b"\xcd" * 32, Scope.READ)))
    assert parse_config(BASE, Path("/")).access is None
    assert Scope.WRITE.allows(Scope.READ) and Scope.WRITE.allows(Scope.WRITE)
    assert Scope.READ.allows(Scope.READ) and not Scope.READ.allows(Scope.WRITE)
    assert _DIGEST not in repr(cfg.access)


@pytest.mark.parametrize(
    ("access", "message"),
    [
        ({}, "access: missing required key 'tokens'"),
        ({"tokens": []}, "access.tokens: expected a non-empty list"),
        ({"tokens": [{"name": "a", "sha256": _DIGEST}]},
         "access.tokens[0]: missing required key 'scope'"),
        ({"tokens": [{"name": "a", "sha256": _DIGEST, "scope": "admin"}]},
         "access.tokens[0].scope: expected read or write"),
        ({"tokens": [{"name": "a", "sha256": "abc", "scope": "read"}]},
         "access.tokens[0].sha256: expected 64 hex characters (the token's SHA-256)"),
        ({"tokens": [{"name": "a", "sha256": _DIGEST + "\n", "scope": "read"}]},
         "access.tokens[0].sha256: expected 64 hex characters (the token's SHA-256)"),
        ({"tokens": [{"name": "a b", "sha256": _DIGEST, "scope": "read"}]},
         "access.tokens[0].name: use letters, digits, '.', '_' or '-' (max 63)"),
        ({"tokens": [{"name": "a", "sha256": _DIGEST, "scope": "read", "token": "x"}]},
         "access.tokens[0]: unknown key 'token'"),
        ({"tokens": [{"name": "a", "sha256": _DIGEST, "scope": "read"},
                     {"name": "a", "sha256": "cd" * 32, "scope": "read"}]},
         "access.tokens: name 'a' appears twice"),
        ({"tokens": [{"name": "a", "sha256": _DIGEST, "scope": "read"},
                     {"name": "b", "sha256": _DIGEST, "scope": "write"}]},
         "access.tokens: two entries have the same sha256"),
    ],
)
def test_bad_access_sections_name_the_key(access: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(access=access), Path("/"))
    assert str(info.value) == message


def test_insecure_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(cluster__insecure="yes"), Path("/"))
    assert str(info.value) == "cluster.insecure: expected true or false, got 'yes'"
