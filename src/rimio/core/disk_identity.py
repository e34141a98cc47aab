"""Who a disk belongs to: the identity file's codec and the start-up decision.

Every disk of a node carries a small JSON document (`rimio-disk.json` at its
root, RFC 0012) naming the cluster, the node, a random uuid of the disk, the
disk's index in the node's disk list when it was initialised and when that
was. `encode_identity` / `decode_identity` are its codec; decoding checks
every field and raises `ConfigError` with one line, whatever the bytes.

`plan_disks` decides, from what the node found on each configured disk, what
start-up does with each: keep it, initialise it (a blank disk on a first
start, or one the operator named as replaced), adopt it (data written by a
Rimio from before identities), or refuse the start with one line. No I/O
here: the trio shell (`rimio.storage.disk_identity`) looks at the disks and
writes what the plan says.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rimio.core.errors import ConfigError

IDENTITY_FORMAT = 1
# An identity is a few hundred bytes; anything much larger is not one.
MAX_IDENTITY_BYTES = 4096
_MAX_NAME = 255
_FIELDS = ("format", "cluster", "node_id", "disk_uuid", "disk_index", "created_at")


@dataclass(frozen=True, slots=True)
class DiskIdentity:
    """What a disk says about itself. `disk_index` is informational: the
    disk's place in the node's list when it was initialised (the list may be
    reordered later, RFC 0001)."""

    cluster: str
    node_id: str
    disk_uuid: str
    disk_index: int
    created_at: float


def encode_identity(identity: DiskIdentity) -> bytes:
    """The identity file's bytes (JSON, one object, keys in a fixed order)."""
    doc = {"format": IDENTITY_FORMAT, "cluster": identity.cluster,
           "node_id": identity.node_id, "disk_uuid": identity.disk_uuid,
           "disk_index": identity.disk_index, "created_at": identity.created_at}
    return (json.dumps(doc, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def decode_identity(data: bytes) -> DiskIdentity:
    """Parse and check an identity file; ConfigError (one line, no input echoed) if unusable."""
    if len(data) > MAX_IDENTITY_BYTES:
        raise ConfigError(f"it is {len(data)} bytes, more than {MAX_IDENTITY_BYTES}")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ConfigError("it is not JSON") from None
    if not isinstance(doc, dict):
        raise ConfigError("it is not a JSON object")
    version = doc.get("format")
    if type(version) is not int:
        raise ConfigError("'format' must be an integer")
    if version > IDENTITY_FORMAT:
        raise ConfigError(f"format {version} was written by a newer Rimio "
                          f"(this one reads format {IDENTITY_FORMAT})")
    if version < 1:
        raise ConfigError(f"format {version} is not a known format")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}")
    missing = [name for name in _FIELDS if name not in doc]
    if missing:
        raise ConfigError(f"missing key {missing[0]!r}")
    index, created = doc["disk_index"], doc["created_at"]
    if type(index) is not int or not 0 <= index < 2**31:
        raise ConfigError("'disk_index' must be a non-negative integer")
    if type(created) not in (int, float) or not math.isfinite(created) or created < 0:
        raise ConfigError("'created_at' must be a non-negative number")
    return DiskIdentity(cluster=_name(doc, "cluster"), node_id=_name(doc, "node_id"),
                        disk_uuid=_name(doc, "disk_uuid"), disk_index=index,
                        created_at=float(created))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _name(doc: dict[str, object], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_NAME:
        raise ConfigError(f"{key!r} must be a non-empty string of at most {_MAX_NAME} "
                          "characters")
    if not value.isprintable():
        raise ConfigError(f"{key!r} must be printable")
    return value


class DiskState(enum.Enum):
    """What a configured disk path holds, as far as Rimio is concerned."""

    MISSING = "missing"  # the directory does not exist
    BLANK = "blank"  # a directory without Rimio data (empty, or only lost+found and the like)
    LEGACY = "legacy"  # Rimio data but no identity: written before identities existed
    OWNED = "owned"  # an identity file


@dataclass(frozen=True, slots=True)
class DiskSeen:
    """One configured disk as the node found it. `identity` is set for OWNED;
    `legacy_owner` is the node a LEGACY disk's `node.json` names, if it has one."""

    path: str
    state: DiskState
    identity: DiskIdentity | None = None
    legacy_owner: str | None = None


class DiskAction(enum.Enum):
    KEEP = "keep"  # the disk is this node's: nothing to write
    INITIALISE = "initialise"  # write a new identity (a blank disk)
    ADOPT = "adopt"  # write a new identity over existing data (migration)


def plan_disks(seen: Sequence[DiskSeen], *, cluster: str, node_id: str,
               replacing: Collection[str] = ()) -> list[DiskAction]:
    """What start-up does with each disk (in the order of `seen`), or ConfigError.

    A blank or missing disk is initialised only when no disk of the node
    holds anything of it (a first start), or when the operator named it in
    `replacing` (`rimio admin init-disk`); otherwise it is refused as
    missing or as looking unmounted. A disk of another node or cluster is
    always refused. A disk named in `replacing` must be blank or missing.
    """
    for disk in seen:
        _check_owner(disk, cluster=cluster, node_id=node_id)
    uuids: dict[str, str] = {}
    for disk in seen:
        if disk.identity is None:
            continue
        first = uuids.setdefault(disk.identity.disk_uuid, disk.path)
        if first != disk.path:
            raise ConfigError(f"disks {first} and {disk.path} of node {node_id} are the same "
                              f"disk (uuid {disk.identity.disk_uuid}); list each disk once")
    unknown = sorted(set(replacing) - {d.path for d in seen})
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a disk of node {node_id} in the configuration")
    holding = [d.path for d in seen if d.state in (DiskState.OWNED, DiskState.LEGACY)]
    actions = []
    for disk in seen:
        if disk.path in replacing and disk.state not in (DiskState.MISSING, DiskState.BLANK):
            raise ConfigError(f"disk {disk.path} of node {node_id} is not blank: it already "
                              "holds Rimio data; only an empty disk can be initialised")
        if disk.state is DiskState.OWNED:
            actions.append(DiskAction.KEEP)
        elif disk.state is DiskState.LEGACY:
            actions.append(DiskAction.ADOPT)
        elif not holding or disk.path in replacing:
            actions.append(DiskAction.INITIALISE)
        else:
            raise ConfigError(_blank_refusal(disk, node_id, holding[0]))
    return actions


def _check_owner(disk: DiskSeen, *, cluster: str, node_id: str) -> None:
    if disk.identity is not None:
        if disk.identity.cluster != cluster:
            raise ConfigError(f"disk {disk.path} belongs to cluster {disk.identity.cluster!r} "
                              f"(node {disk.identity.node_id!r}), not to {cluster!r}")
        if disk.identity.node_id != node_id:
            raise ConfigError(f"disk {disk.path} belongs to node {disk.identity.node_id!r}, "
                              f"not to {node_id!r}")
    if disk.legacy_owner is not None and disk.legacy_owner != node_id:
        raise ConfigError(f"disk {disk.path} belongs to node {disk.legacy_owner!r}, "
                          f"not to {node_id!r}")


def _blank_refusal(disk: DiskSeen, node_id: str, holding: str) -> str:
    remedy = ("mount it, or if it is a new or replaced disk run "
              "`rimio admin init-disk` for it (RFC 0012)")
    if disk.state is DiskState.MISSING:
        return (f"disk {disk.path} of node {node_id} is missing: the directory does not exist "
                f"while {holding} holds this node's data; {remedy}")
    return (f"disk {disk.path} of node {node_id} looks unmounted: the directory is empty "
            f"while {holding} holds this node's data; {remedy}")
