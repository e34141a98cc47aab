"""Configuration: the cluster file (RFC 0006), its sections, parsed and validated.

Each section is described once, by a table of options (`rimio.core.schema`),
and one generic walker checks a parsed file against the tables before
anything is written: unknown keys, missing fields, wrong types and impossible
values raise `ConfigError` with one line that names the dotted key. Defaults
live in the section dataclasses below. The few rules that span fields
(unique node ids and addresses, the write quorum against the node count, the
membership knobs together) are checked after the walk. Relative disk paths
are relative to the file.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from rimio.core import schema
from rimio.core.errors import ConfigError
from rimio.core.keyring import KeyRing, KeyRingError
from rimio.core.schema import Context, Integer, ListOf, Number, Option, Section, Text
from rimio.core.slots import DEFAULT_TOTAL_SLOTS
from rimio.core.swim import SwimConfig

H = TypeVar("H", bound=Hashable)

NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CLUSTER_NAME = NODE_ID
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}\Z")


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
        if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
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
    # metadata databases kept open at once: one per group of slots, 64 per disk (RFC 0010)
    max_open_slots: int = 512
    # objects up to this size live in their slot's database row (RFC 0008); 0: never
    inline_max_bytes: int = 64 * 1024
    # memory for the bytes of small hot objects (0: no read cache), and the
    # largest object kept there (RFC 0009)
    read_cache_bytes: int = 32 * 1024 * 1024
    read_cache_max_object_bytes: int = 64 * 1024
    # new part files: "none" or "zstd" (only parts the ratio probe finds
    # compressible), at this zstd level; existing parts stay readable either way
    compression: str = "none"
    compression_level: int = 3
    # superseded generations (and orphan files) are kept this long, on the
    # wall clock and on the monotonic clock of the running process (RFC 0016)
    gc_grace_seconds: float = 600.0
    gc_interval_seconds: float = 60.0
    # garbage collection unlinks at most this many files per second on average
    gc_files_per_second: float = 1000.0
    # the answer to a write id is remembered this long (a retry within it is
    # answered, not written again)
    write_result_ttl_seconds: float = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class RepairConfig:
    """Anti-entropy between the replicas of a slot (RFC 0014)."""

    # a round over every peer starts at least this often (0: never)
    interval_seconds: float = 60.0
    # slots compared and repaired at once, with one peer: 1 keeps healing
    # gentle on clients (benchmarks/healing.md: client p99 within 2x of idle at
    # 1, about 3.7x at 4, on a loaded 2-core machine)
    slot_concurrency: int = 1
    # repair traffic, bytes per second on average
    bytes_per_second: int = 32 * 1024 * 1024
    # a tombstone every replica holds is forgotten once it is this old, and a
    # node out of touch with its peers this long re-syncs first (RFC 0015)
    tombstone_retention_seconds: float = 7 * 24 * 3600.0
    # the scrub (RFC 0017): part bytes re-hashed per second on average (0: off)
    scrub_bytes_per_second: int = 8 * 1024 * 1024
    # a scrub pass over every part starts at most this often
    scrub_interval_seconds: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP server's limits (RFC 0006 section 7); `api/limits` enforces
    the per-request ones, hypercorn the per-connection ones."""

    graceful_timeout_seconds: float = 10.0
    max_header_bytes: int = 16 * 1024
    # A connection gets this long to deliver a complete request head, counted
    # from accept or from the end of the previous answer.
    header_timeout_seconds: float = 10.0
    # An idle keep-alive connection is closed after this long. hypercorn times
    # idleness and header arrival with one timer: the smaller value is used.
    idle_timeout_seconds: float = 30.0
    # An upload slower than this (averaged over the time the node waited for
    # it, after the grace window) is cut off with 408 and its connection closed.
    min_body_rate_bytes_per_second: int = 1024
    body_rate_grace_seconds: float = 10.0
    # Requests served at once; more are answered 503 with Retry-After.
    max_inflight_requests: int = 1024
    # Client connections held open at once; more are answered 503 and closed.
    max_connections: int = 2048
    # Connections to other nodes for forwarded requests and listings, and how
    # long a request waits for one before it is answered 503.
    forward_pool_connections: int = 64
    forward_pool_timeout_seconds: float = 5.0

    @property
    def keep_alive_timeout(self) -> float:
        """hypercorn's one timer for both idle connections and request heads."""
        return min(self.header_timeout_seconds, self.idle_timeout_seconds)


class Scope(enum.Enum):
    """What a client token may do: `write` implies `read`."""

    READ = "read"
    WRITE = "write"

    def allows(self, needed: Scope) -> bool:
        return self is Scope.WRITE or needed is Scope.READ


@dataclass(frozen=True, slots=True)
class AccessToken:
    """One client token of the `access` section: only its SHA-256 is configured."""

    name: str  # shown in logs instead of the token
    sha256: bytes  # the 32-byte digest of the token's UTF-8 text
    scope: Scope

    def __repr__(self) -> str:  # the digest is not secret, but has no business in logs
        return f"AccessToken(name={self.name!r}, scope={self.scope.value})"


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Client tokens; with this section every `/api/v1` request but healthz needs one."""

    tokens: tuple[AccessToken, ...]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    nodes: tuple[NodeSpec, ...]
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    key_file: Path | None = None
    # Run a cluster of several nodes without a key file, knowingly.
    insecure: bool = False
    # Overrides of the SWIM/Lifeguard knobs (`rimio.core.swim.SwimConfig` fields).
    membership: tuple[tuple[str, float | int | bool], ...] = ()
    # None: the public API is open to anyone who can reach the node.
    access: AccessConfig | None = None

    def swim_config(self) -> SwimConfig:
        overrides: dict[str, Any] = dict(self.membership)
        return SwimConfig(cluster=self.name, **overrides)

    def keyring(self) -> KeyRing | None:
        return None if self.key_file is None else load_keyring(self.key_file)

    def check_keyed(self) -> None:
        """Refuse a cluster of several nodes without a key, unless it says `insecure`.

        Without a key, anyone who reaches a node's port can forge gossip and
        read the internal API, so a multi-node cluster must opt out loudly.
        """
        if len(self.nodes) >= 2 and self.key_file is None and not self.insecure:
            raise ConfigError(
                f"cluster.key_file: a cluster of {len(self.nodes)} nodes needs a key file "
                "(make one with `rimio keygen PATH`), or set cluster.insecure: true")

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


# -- section tables ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AddressKind(schema.Kind):
    """A `host:port` string."""

    def check(self, value: Any, where: str, context: Context) -> Address:
        return Address.parse(value, where)

    def describe(self) -> str:
        return "host:port"


@dataclass(frozen=True, slots=True)
class _PathKind(schema.Kind):
    """A file system path; relative ones are relative to the config file."""

    def check(self, value: Any, where: str, context: Context) -> Path:
        path = Path(Text().check(value, where, context)).expanduser()
        return path if path.is_absolute() else context.base_dir / path

    def describe(self) -> str:
        return "path"


_NAME_RULE = "use letters, digits, '.', '_' or '-' (max 63)"

CLUSTER_SECTION: Final = Section((
    Option("name", Text(_CLUSTER_NAME, _NAME_RULE), "the cluster's name", required=True),
    Option("key_file", _PathKind(), "file with the cluster's shared keys (enables signing)"),
    Option("insecure", schema.Boolean(),
           "run several nodes without a key file (anyone on the network can join)"),
))

TOKEN_SECTION: Final = Section((
    Option("name", Text(NODE_ID, _NAME_RULE), "the token's name, shown in logs",
           required=True),
    Option("sha256", Text(_SHA256_HEX, "expected 64 hex characters (the token's SHA-256)"),
           "hex SHA-256 of the token (`rimio token new` prints it)", required=True),
    Option("scope", Text(re.compile(f"^({'|'.join(s.value for s in Scope)})\\Z"),
                         "expected " + " or ".join(s.value for s in Scope)),
           "read, or write (which implies read)", required=True),
))

ACCESS_SECTION: Final = Section((
    Option("tokens", ListOf(TOKEN_SECTION), "the client tokens accepted", required=True),
))

DISK_SECTION: Final = Section((
    Option("path", _PathKind(), "directory the node stores data in", required=True),
))

NODE_SECTION: Final = Section((
    Option("node_id", Text(NODE_ID, _NAME_RULE), "the node's unique id", required=True),
    Option("bind_addr", _AddressKind(), "address the node listens on", required=True),
    Option("advertise_addr", _AddressKind(), "address peers use (default: bind_addr)"),
    Option("disks", ListOf(DISK_SECTION), "the node's data directories", required=True),
))

REPLICATION_SECTION: Final = Section((
    Option("replicas", Integer(1, 16), "copies of each object (capped at the node count)"),
    # The upper bound also depends on the node count: checked after the walk.
    Option("min_write_replicas", Integer(1, 16),
           "copies a write needs (default: a majority of the replicas)", nullable=True),
    Option("total_slots", Integer(1, 1 << 20), "slots the key space is split into"),
))

INITIAL_CLUSTER_SECTION: Final = Section((
    Option("nodes", ListOf(NODE_SECTION), "the cluster's first members", required=True),
    Option("replication", REPLICATION_SECTION, "how many copies are kept"),
))

_COMPRESSION = re.compile(r"\A(none|zstd)\Z")

STORAGE_SECTION: Final = Section((
    Option("part_size_bytes", Integer(4096, 1 << 30), "size of the parts an object is cut in"),
    Option("max_object_bytes", Integer(0, 1 << 50), "largest object accepted"),
    Option("io_threads", Integer(1, 256), "threads doing blocking disk work"),
    Option("max_open_slots", Integer(1, 1 << 20), "metadata databases kept open (64 per disk)"),
    Option("inline_max_bytes", Integer(0, 1 << 20),
           "objects up to this size are stored in the slot database, not in files (0: never)"),
    Option("read_cache_bytes", Integer(0, 1 << 40),
           "memory for the bytes of small hot objects (0: no read cache)"),
    Option("read_cache_max_object_bytes", Integer(0, 1 << 30),
           "largest object kept in the read cache"),
    Option("compression", Text(_COMPRESSION, "none or zstd"),
           "how new part files are stored: none, or zstd when the probe finds them compressible"),
    Option("compression_level", Integer(1, 22), "zstd level of compressed parts"),
    Option("gc_grace_seconds", Number(0, 1e9), "how long superseded data stays readable"),
    Option("gc_interval_seconds", Number(0.01, 1e9), "how often garbage is collected"),
    Option("gc_files_per_second", Number(1, 1e9),
           "files garbage collection unlinks per second, on average"),
    Option("write_result_ttl_seconds", Number(60, 1e10),
           "how long the answer to a write id is remembered for retries"),
))

REPAIR_SECTION: Final = Section((
    Option("interval_seconds", Number(0, 1e9),
           "a round of anti-entropy starts at least this often (0: never)"),
    Option("slot_concurrency", Integer(1, 1024), "slots compared and repaired at once"),
    Option("bytes_per_second", Integer(1, 1 << 40), "repair traffic, on average"),
    Option("tombstone_retention_seconds", Number(1, 1e10),
           "tombstones all replicas hold are purged after this; a node away longer re-syncs"),
    Option("scrub_bytes_per_second", Integer(0, 1 << 40),
           "part bytes the scrub re-hashes per second, on average (0: no scrub)"),
    Option("scrub_interval_seconds", Number(0, 1e9),
           "a scrub pass over every part starts at most this often"),
))

SERVER_SECTION: Final = Section((
    Option("graceful_timeout_seconds", Number(0, 3600), "time requests get to finish on stop"),
    Option("max_header_bytes", Integer(1024, 1 << 20), "largest request head accepted"),
    Option("header_timeout_seconds", Number(0.1, 3600),
           "time a connection gets to send a complete request head"),
    Option("idle_timeout_seconds", Number(0.1, 86400),
           "idle keep-alive connections are closed after this long"),
    Option("min_body_rate_bytes_per_second", Integer(0, 1 << 30),
           "slower uploads are cut off after the grace window (0: never)"),
    Option("body_rate_grace_seconds", Number(0, 3600),
           "time an upload gets before its rate is enforced"),
    Option("max_inflight_requests", Integer(1, 1 << 20),
           "requests served at once; more are answered 503"),
    Option("max_connections", Integer(1, 1 << 20),
           "client connections held open at once; more are answered 503 and closed"),
    Option("forward_pool_connections", Integer(1, 4096),
           "connections to other nodes for forwarded requests"),
    Option("forward_pool_timeout_seconds", Number(0.01, 3600),
           "how long a forwarded request waits for a pooled connection"),
))


def _membership_kind(default: object) -> schema.Kind:
    # The knob's type is the type of its SwimConfig default.
    if isinstance(default, bool):
        return schema.Boolean()
    if isinstance(default, int):
        return Integer(0, 1 << 31)
    return Number(0, 1e9)


# One option per SWIM/Lifeguard knob, derived from `SwimConfig` itself so the
# two cannot drift; the dataclass documents each knob.
MEMBERSHIP_SECTION: Final = Section(tuple(
    Option(knob.name, _membership_kind(knob.default), f"SwimConfig.{knob.name}")
    for knob in dataclasses.fields(SwimConfig) if knob.name != "cluster"
))

CONFIG_FILE: Final = Section((
    Option("cluster", CLUSTER_SECTION, "the cluster's identity", required=True),
    Option("initial_cluster", INITIAL_CLUSTER_SECTION, "members and replication",
           required=True),
    Option("storage", STORAGE_SECTION, "storage engine limits"),
    Option("server", SERVER_SECTION, "HTTP server limits"),
    Option("repair", REPAIR_SECTION, "anti-entropy between replicas"),
    Option("membership", MEMBERSHIP_SECTION, "overrides of the membership protocol's knobs"),
    Option("access", ACCESS_SECTION, "client tokens (without it the API is open)"),
))


# -- parsing -----------------------------------------------------------------


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


def write_key_file(path: Path) -> None:
    """Write a new one-key file, readable by its owner only; never overwrite.

    (`rimio keygen`, `rimio demo` and multi-node `LocalCluster`s use it.)"""
    text = ("# Rimio cluster key: the same file on every node; keep it secret.\n"
            "# To rotate: add a new key, SIGHUP every node, move it first, SIGHUP,\n"
            "# then drop the old key and SIGHUP again.\n"
            f"{KeyRing.generate()}\n")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; not overwriting a key file") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(text)


def ensure_key_file(path: Path) -> None:
    """Make a new key file at `path` unless one is there (then check it reads)."""
    if path.exists():
        load_keyring(path)  # refuse a damaged one now, in one line
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    write_key_file(path)


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


def parse_config(raw: Any, base_dir: Path) -> ClusterConfig:
    """Validate a parsed cluster file (or a seed's state) and build the config."""
    document = CONFIG_FILE.check(raw, "", Context(base_dir))
    cluster = document["cluster"]
    key_file: Path | None = cluster.get("key_file")
    if key_file is not None:
        load_keyring(key_file)  # refuse a missing or malformed key file now
    initial = document["initial_cluster"]
    nodes = _node_specs(initial["nodes"])
    return ClusterConfig(
        name=cluster["name"],
        nodes=nodes,
        replication=_replication(initial.get("replication", {}), len(nodes)),
        storage=StorageConfig(**document.get("storage", {})),
        server=ServerConfig(**document.get("server", {})),
        repair=_repair(document.get("repair", {})),
        key_file=key_file,
        insecure=cluster.get("insecure", False),
        membership=_membership(document.get("membership")),
        access=_access(document.get("access")),
    )


def _node_specs(checked: list[dict[str, Any]]) -> tuple[NodeSpec, ...]:
    nodes = tuple(
        NodeSpec(
            node_id=node["node_id"],
            bind_addr=node["bind_addr"],
            advertise_addr=node.get("advertise_addr", node["bind_addr"]),
            disks=tuple(disk["path"] for disk in node["disks"]),
        )
        for node in checked
    )
    dup = _first_duplicate(n.node_id for n in nodes)
    if dup is not None:
        raise ConfigError(f"initial_cluster.nodes: node id {dup!r} appears twice")
    dup = _first_duplicate(str(n.advertise_addr) for n in nodes)
    if dup is not None:
        raise ConfigError(f"initial_cluster.nodes: address {dup} is used by two nodes")
    return nodes


def _replication(checked: dict[str, Any], node_count: int) -> ReplicationConfig:
    replication = ReplicationConfig(**checked)
    effective = min(replication.replicas, node_count)
    quorum = replication.min_write_replicas
    if quorum is not None and quorum > effective:
        raise ConfigError(f"initial_cluster.replication.min_write_replicas: {quorum} is "
                          f"outside 1..{effective}")
    return replication


def _repair(checked: dict[str, Any]) -> RepairConfig:
    repair = RepairConfig(**checked)
    # A node out of touch for longer than the retention re-syncs (RFC 0015):
    # a few missed rounds must never make it do so.
    if 0 < repair.tombstone_retention_seconds < 10 * repair.interval_seconds:
        raise ConfigError(f"repair.tombstone_retention_seconds: "
                          f"{repair.tombstone_retention_seconds:g} must be at least 10 times "
                          f"repair.interval_seconds ({repair.interval_seconds:g})")
    return repair


def _membership(checked: dict[str, Any] | None) -> tuple[tuple[str, float | int | bool], ...]:
    if not checked:
        return ()
    try:
        SwimConfig(**checked)  # the knobs' own cross-checks (e.g. timeout < interval)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"membership: {exc}") from None
    return tuple(sorted(checked.items()))


def _access(checked: dict[str, Any] | None) -> AccessConfig | None:
    if checked is None:
        return None
    tokens = tuple(AccessToken(t["name"], bytes.fromhex(t["sha256"]), Scope(t["scope"]))
                   for t in checked["tokens"])
    dup = _first_duplicate(t.name for t in tokens)
    if dup is not None:
        raise ConfigError(f"access.tokens: name {dup!r} appears twice")
    if _first_duplicate(t.sha256 for t in tokens) is not None:
        raise ConfigError("access.tokens: two entries have the same sha256")
    return AccessConfig(tokens)


def _first_duplicate(items: Iterable[H]) -> H | None:
    """The first item of `items` that appears more than once, if any."""
    listed = list(items)
    counts = Counter(listed)
    return next((x for x in listed if counts[x] > 1), None)
