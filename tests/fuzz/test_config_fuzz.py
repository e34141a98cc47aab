"""The config parser on random and mutated documents: it accepts them or
raises `ConfigError`, never another exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rimio.config import parse_config
from rimio.errors import ConfigError

from .conftest import EXAMPLES

VALID: dict[str, Any] = {
    "cluster": {"name": "edge"},
    "initial_cluster": {
        "nodes": [
            {"node_id": "node-1", "bind_addr": "127.0.0.1:19080", "disks": [{"path": "d1"}]},
            {"node_id": "node-2", "bind_addr": "[::1]:19081", "disks": [{"path": "/abs/d2"}]},
        ],
        "replication": {"replicas": 3, "min_write_replicas": 2, "total_slots": 2048},
    },
    "storage": {"part_size_bytes": 8388608, "inline_max_bytes": 1024},
    "server": {"graceful_timeout_seconds": 5, "max_inflight_requests": 10,
               "min_body_rate_bytes_per_second": 100, "header_timeout_seconds": 2.5},
    "membership": {"probe_interval": 1.0, "probe_timeout": 0.5},
}

# What YAML can produce: scalars of every type, lists and mappings.
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=30) | st.sampled_from(["²", "٣", "1:²", "host:99999", ":80",
                                                      "[::1]:0", "-1", "1e9", "é:1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12) | SCALARS, inner, max_size=4),
                      max_leaves=12)


def _parse(document: Any) -> None:
    try:
        parse_config(document, base_dir=Path("/nonexistent-base"))
    except ConfigError as exc:
        assert str(exc)  # one readable line
        assert "\n" not in str(exc)


@settings(max_examples=EXAMPLES * 8, deadline=None, suppress_health_check=list(HealthCheck))
@given(VALUES)
def test_random_documents_raise_only_config_errors(document: Any) -> None:
    _parse(document)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a document: dict keys and list indexes."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


POSITIONS = _paths(VALID)[1:]


@settings(max_examples=EXAMPLES * 16, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(POSITIONS), st.sampled_from(["set", "drop", "key"]),
                          VALUES), min_size=1, max_size=3))
def test_mutated_documents_raise_only_config_errors(
        mutations: list[tuple[tuple[Any, ...], str, Any]]) -> None:
    document = copy.deepcopy(VALID)
    for position, how, value in mutations:
        parent: Any = document
        try:
            for step in position[:-1]:
                parent = parent[step]
            last = position[-1]
            if how == "set":
                parent[last] = value
            elif how == "drop":
                del parent[last]
            elif isinstance(parent, dict):  # an extra, unknown key beside this one
                parent[value if isinstance(value, str | int) else "extra"] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation moved this position
    _parse(document)


def test_the_unmutated_document_parses() -> None:
    config = parse_config(copy.deepcopy(VALID), base_dir=Path("/base"))
    assert config.server.max_inflight_requests == 10
