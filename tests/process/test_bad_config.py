"""A bad configuration: one `rimio: error:` line on stderr, exit 2, nothing written."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from process_harness import (
    NodeDef,
    cluster_config,
    free_port,
    run_rimio,
    single_node_config,
    tree,
    write_config,
)

# A case gets the test's tmp dir, the node and an ExitStack (for resources it
# must hold while rimio runs) and returns the arguments of `rimio start`.
Case = Callable[[Path, NodeDef, ExitStack], list[str]]


def _start(conf: Path, node_id: str = "node-1") -> list[str]:
    return ["start", "--conf", str(conf), "--node", node_id]


def _with(mutate: Callable[[dict[str, Any]], object]) -> Case:
    def case(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
        config = single_node_config(node)
        mutate(config)
        return _start(write_config(tmp / "rimio.yaml", config))
    return case


def _node0(config: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = config["initial_cluster"]["nodes"][0]
    return node


def two_nodes_without_a_key(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    other = NodeDef("node-2", free_port(), tmp / "node-2" / "disk")
    return _start(write_config(tmp / "rimio.yaml", cluster_config([node, other])))


def unknown_node_id(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    return _start(write_config(tmp / "rimio.yaml", single_node_config(node)), "node-9")


def disk_is_a_file(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    node.disk.parent.mkdir(parents=True)
    node.disk.write_bytes(b"not a directory")
    return _start(write_config(tmp / "rimio.yaml", single_node_config(node)))


def disk_below_a_file(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    blocker = tmp / "blocker"
    blocker.write_bytes(b"x")
    config = single_node_config(node)
    _node0(config)["disks"] = [{"path": str(blocker / "disk")}]
    return _start(write_config(tmp / "rimio.yaml", config))


def port_in_use(tmp: Path, node: NodeDef, stack: ExitStack) -> list[str]:
    holder = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    holder.bind((node.host, node.port))
    holder.listen()
    return _start(write_config(tmp / "rimio.yaml", single_node_config(node)))


def invalid_yaml(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    text = f"cluster: {{name: t\ninitial_cluster:\n  nodes: [{{node_id: node-1, disks: {node.disk}"
    return _start(write_config(tmp / "rimio.yaml", text))


def empty_file(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    return _start(write_config(tmp / "rimio.yaml", ""))


def missing_file(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    return _start(tmp / "no-such-config.yaml")


def config_is_a_directory(tmp: Path, node: NodeDef, _stack: ExitStack) -> list[str]:
    (tmp / "conf.d").mkdir()
    return _start(tmp / "conf.d")


CASES: dict[str, Case] = {
    "unknown-node-id": unknown_node_id,
    "missing-cluster": _with(lambda c: c.pop("cluster")),
    "missing-initial-cluster": _with(lambda c: c.pop("initial_cluster")),
    "missing-node-disks": _with(lambda c: _node0(c).pop("disks")),
    "missing-bind-addr": _with(lambda c: _node0(c).pop("bind_addr")),
    "unknown-top-level-key": _with(lambda c: c.update(colour="blue")),
    "unknown-nested-key": _with(lambda c: c["initial_cluster"]["replication"].update(rf=3)),
    "bad-port": _with(lambda c: _node0(c).update(bind_addr="127.0.0.1:99999")),
    "part-size-too-small": _with(lambda c: c.update(storage={"part_size_bytes": 100})),
    "quorum-above-replicas": _with(
        lambda c: c["initial_cluster"]["replication"].update(min_write_replicas=2)),
    "disk-is-a-regular-file": disk_is_a_file,
    "disk-below-a-regular-file": disk_below_a_file,
    "port-in-use": port_in_use,
    "invalid-yaml": invalid_yaml,
    "empty-file": empty_file,
    "nonexistent-config": missing_file,
    "config-is-a-directory": config_is_a_directory,
    "two-nodes-without-a-key": two_nodes_without_a_key,
}

# What the one error line must name, for the cases that check it.
NAMES = {"two-nodes-without-a-key": "cluster.key_file"}


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.mark.process
@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_config_one_error_line_exit_2_nothing_written(
    case: str, tmp_path: Path, one_node: NodeDef, stack: ExitStack
) -> None:
    args = CASES[case](tmp_path, one_node, stack)
    before = tree(tmp_path)
    done = run_rimio(args, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, f"exit {done.returncode}; stderr:\n{done.stderr}"
    assert len(lines) == 1, f"expected one stderr line, got:\n{done.stderr}"
    assert lines[0].startswith("rimio: error: "), lines[0]
    assert NAMES.get(case, "") in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert tree(tmp_path) == before, "a rejected start wrote files"
    assert not one_node.disk.is_dir()
