"""Configuration: the cluster file of DESIGN §11, parsed and validated.

Everything is checked before anything is written: unknown keys, missing
fields, wrong types and impossible values raise `ConfigError` with one line
that names the offending key. Relative disk paths are relative to the file.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rimio.core.errors import ConfigError
from rimio.core.keyring import KeyRing, KeyRingError
from rimio.core.slots import DEFAULT_TOTAL_SLOTS
from rimio.core.swim import SwimConfig

NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CLUSTER_NAME = NODE_ID


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, where: str) -> Address:
        if not isinstance(text, str):
            raise ConfigError(f"{where}: expected 'host:port', got {text!r}")
        host, sep, port_text = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit():
            raise ConfigError(f"{where}: expected 'host:port', got {text!r}")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{where}: port {port} out of range")
        return cls(host, port)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: str
    bind_addr: Address
    advertise_addr: Address
    disks: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    replicas: int = 3
    min_write_replicas: int | None = None  # None: majority of the effective R
    total_slots: int = DEFAULT_TOTAL_SLOTS


@dataclass(frozen=True, slots=True)
class StorageConfig:
    part_size_bytes: int = 8 * 1024 * 1024
    max_object_bytes: int = 5 * 1024**3
    io_threads: int = 8
    # slot databases kept open at once (each costs ~175 KiB of RSS and 3 fds)
    max_open_slots: int = 512
    # superseded generations are kept this long so in-flight reads finish
    gc_grace_seconds: float = 600.0
    gc_interval_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    graceful_timeout_seconds: float = 10.0
    max_header_bytes: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    nodes: tuple[NodeSpec, ...]
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    key_file: Path | None = None
    # Overrides of the SWIM/Lifeguard knobs (`rimio.core.swim.SwimConfig` fields).
    membership: tuple[tuple[str, float | int | bool], ...] = ()

    def swim_config(self) -> SwimConfig:
        overrides: dict[str, Any] = dict(self.membership)
        return SwimConfig(cluster=self.name, **overrides)

    def keyring(self) -> KeyRing | None:
        return None if self.key_file is None else load_keyring(self.key_file)

    @property
    def effective_replicas(self) -> int:
        return min(self.replication.replicas, len(self.nodes))

    @property
    def write_quorum(self) -> int:
        if self.replication.min_write_replicas is not None:
            return self.replication.min_write_replicas
        return self.effective_replicas // 2 + 1

    def node(self, node_id: str) -> NodeConfig:
        for spec in self.nodes:
            if spec.node_id == node_id:
                return NodeConfig(cluster=self, spec=spec)
        known = ", ".join(n.node_id for n in self.nodes)
        raise ConfigError(f"unknown node id {node_id!r} (the config defines: {known})")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The cluster's configuration seen from one node."""

    cluster: ClusterConfig
    spec: NodeSpec

    @property
    def node_id(self) -> str:
        return self.spec.node_id

    def with_bind(self, bind: Address, advertise: Address | None = None) -> NodeConfig:
        spec = replace(self.spec, bind_addr=bind, advertise_addr=advertise or bind)
        nodes = tuple(spec if n.node_id == spec.node_id else n for n in self.cluster.nodes)
        return NodeConfig(cluster=replace(self.cluster, nodes=nodes), spec=spec)


def single_node_config(
    data_dir: Path,
    *,
    node_id: str = "node-1",
    bind: Address | None = None,
    cluster_name: str = "rimio-local",
    storage: StorageConfig | None = None,
) -> NodeConfig:
    """A one-node, one-replica cluster: what `rimio demo` and tests embed."""
    addr = bind or Address("127.0.0.1", 0)
    spec = NodeSpec(node_id, addr, addr, (data_dir,))
    cluster = ClusterConfig(
        name=cluster_name,
        nodes=(spec,),
        replication=ReplicationConfig(replicas=1, min_write_replicas=1),
        storage=storage or StorageConfig(),
    )
    return NodeConfig(cluster=cluster, spec=spec)


# -- parsing ----------------------------------------------------------------


def load_keyring(path: Path) -> KeyRing:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not readable text"
        raise ConfigError(f"cannot read cluster key file {path}: {reason}") from None
    try:
        return KeyRing.parse(text)
    except KeyRingError as exc:
        raise ConfigError(f"cluster key file {path}: {exc}") from None


_SWIM_FIELDS = {f.name: f.default for f in dataclasses.fields(SwimConfig) if f.name != "cluster"}


def _parse_membership(raw: Any) -> tuple[tuple[str, float | int | bool], ...]:
    m = _mapping(raw, "membership", set(_SWIM_FIELDS), set())
    out: list[tuple[str, float | int | bool]] = []
    for key, value in m.items():
        default = _SWIM_FIELDS[key]
        where = f"membership.{key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            out.append((key, value))
        elif isinstance(default, int):
            out.append((key, _int(value, where, 0, 1 << 31)))
        else:
            out.append((key, _num(value, where, 0, 1e9)))
    try:
        checked: dict[str, Any] = dict(out)
        SwimConfig(**checked)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"membership: {exc}") from None
    return tuple(sorted(out))


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster file; raises `ConfigError` on any defect."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {file} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {file} is not valid YAML{where}") from None
    return parse_config(raw, base_dir=file.resolve().parent)


def _mapping(value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    missing = sorted(k for k in required if k not in value)
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    return value


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value} is outside {lo}..{hi}")
    return value


def _num(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value} is outside {lo}..{hi}")
    return float(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _path(value: Any, where: str, base_dir: Path) -> Path:
    p = Path(_str(value, where)).expanduser()
    return p if p.is_absolute() else base_dir / p


def parse_config(raw: Any, base_dir: Path) -> ClusterConfig:
    top = _mapping(raw, "config",
                   {"cluster", "initial_cluster", "storage", "server", "membership"},
                   {"cluster", "initial_cluster"})
    cl = _mapping(top["cluster"], "cluster", {"name", "key_file"}, {"name"})
    name = _str(cl["name"], "cluster.name")
    if not _CLUSTER_NAME.match(name):
        raise ConfigError("cluster.name: use letters, digits, '.', '_' or '-' (max 63)")
    key_file = _path(cl["key_file"], "cluster.key_file", base_dir) if "key_file" in cl else None
    if key_file is not None:
        load_keyring(key_file)  # refuse a missing or malformed key file now

    ic = _mapping(top["initial_cluster"], "initial_cluster", {"nodes", "replication"}, {"nodes"})
    raw_nodes = ic["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ConfigError("initial_cluster.nodes: expected a non-empty list")
    nodes: list[NodeSpec] = []
    for i, raw_node in enumerate(raw_nodes):
        where = f"initial_cluster.nodes[{i}]"
        n = _mapping(raw_node, where, {"node_id", "bind_addr", "advertise_addr", "disks"},
                     {"node_id", "bind_addr", "disks"})
        node_id = _str(n["node_id"], f"{where}.node_id")
        if not NODE_ID.match(node_id):
            raise ConfigError(f"{where}.node_id: use letters, digits, '.', '_' or '-' (max 63)")
        bind = Address.parse(n["bind_addr"], f"{where}.bind_addr")
        adv = Address.parse(n.get("advertise_addr", str(bind)), f"{where}.advertise_addr")
        raw_disks = n["disks"]
        if not isinstance(raw_disks, list) or not raw_disks:
            raise ConfigError(f"{where}.disks: expected a non-empty list")
        disks = tuple(
            _path(_mapping(d, f"{where}.disks[{j}]", {"path"}, {"path"})["path"],
                  f"{where}.disks[{j}].path", base_dir)
            for j, d in enumerate(raw_disks)
        )
        nodes.append(NodeSpec(node_id, bind, adv, disks))
    ids = [n.node_id for n in nodes]
    dup = next((x for x in ids if ids.count(x) > 1), None)
    if dup is not None:
        raise ConfigError(f"initial_cluster.nodes: node id {dup!r} appears twice")
    advs = [str(n.advertise_addr) for n in nodes]
    dup = next((x for x in advs if advs.count(x) > 1), None)
    if dup is not None:
        raise ConfigError(f"initial_cluster.nodes: address {dup} is used by two nodes")

    replication = ReplicationConfig()
    if "replication" in ic:
        r = _mapping(ic["replication"], "initial_cluster.replication",
                     {"replicas", "min_write_replicas", "total_slots"}, set())
        replicas = _int(r.get("replicas", 3), "replication.replicas", 1, 16)
        effective = min(replicas, len(nodes))
        w = r.get("min_write_replicas")
        min_w = None if w is None else _int(w, "replication.min_write_replicas", 1, effective)
        slots = _int(r.get("total_slots", DEFAULT_TOTAL_SLOTS), "replication.total_slots",
                     1, 1 << 20)
        replication = ReplicationConfig(replicas, min_w, slots)

    storage = StorageConfig()
    if "storage" in top:
        s = _mapping(top["storage"], "storage",
                     {"part_size_bytes", "max_object_bytes", "io_threads", "gc_grace_seconds",
                      "gc_interval_seconds", "max_open_slots"}, set())
        storage = StorageConfig(
            part_size_bytes=_int(s.get("part_size_bytes", storage.part_size_bytes),
                                 "storage.part_size_bytes", 4096, 1 << 30),
            max_object_bytes=_int(s.get("max_object_bytes", storage.max_object_bytes),
                                  "storage.max_object_bytes", 0, 1 << 50),
            io_threads=_int(s.get("io_threads", storage.io_threads), "storage.io_threads", 1, 256),
            max_open_slots=_int(s.get("max_open_slots", storage.max_open_slots),
                                "storage.max_open_slots", 1, 1 << 20),
            gc_grace_seconds=_num(s.get("gc_grace_seconds", storage.gc_grace_seconds),
                                  "storage.gc_grace_seconds", 0, 1e9),
            gc_interval_seconds=_num(s.get("gc_interval_seconds", storage.gc_interval_seconds),
                                     "storage.gc_interval_seconds", 0.01, 1e9),
        )
    server = ServerConfig()
    if "server" in top:
        sv = _mapping(top["server"], "server", {"graceful_timeout_seconds", "max_header_bytes"},
                      set())
        server = ServerConfig(
            graceful_timeout_seconds=_num(
                sv.get("graceful_timeout_seconds", server.graceful_timeout_seconds),
                "server.graceful_timeout_seconds", 0, 3600),
            max_header_bytes=_int(sv.get("max_header_bytes", server.max_header_bytes),
                                  "server.max_header_bytes", 1024, 1 << 20),
        )
    membership = _parse_membership(top["membership"]) if "membership" in top else ()
    return ClusterConfig(name=name, nodes=tuple(nodes), replication=replication,
                         storage=storage, server=server, key_file=key_file,
                         membership=membership)
