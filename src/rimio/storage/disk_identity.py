"""The identity file on each disk: looking at the disks, and writing identities.

`survey_disks` reads what each configured disk holds (writes nothing) and
`check_disks` runs the start-up decision of `rimio.core.disk_identity` on it,
so a node can refuse a missing, unmounted or foreign disk before it touches
anything. `claim_identities` does the same again once the node holds its
disks' locks and writes the identities the decision asks for, each one
atomically (temp file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path

from rimio.core.disk_identity import (
    MAX_IDENTITY_BYTES,
    DiskAction,
    DiskIdentity,
    DiskSeen,
    DiskState,
    decode_identity,
    encode_identity,
    plan_disks,
)
from rimio.core.errors import ConfigError
from rimio.storage.disk import NODE_FILE, lock_disk
from rimio.storage.parts import ensure_dir, fsync_dir

log = logging.getLogger("rimio.storage.disk")

IDENTITY_FILE = "rimio-disk.json"
# What Rimio itself keeps at a disk's root (RFC 0001, RFC 0010, RFC 0006): a
# disk with any of these but no identity was written by an older Rimio. The
# layout file's name is `rimio.cluster.layout.LAYOUT_FILE` (storage may not
# import cluster; a test checks that the two agree).
DATA_ENTRIES = frozenset({"slots", "meta", NODE_FILE, "layout.msgpack"})


def read_identity(disk: Path) -> DiskIdentity | None:
    """The disk's identity, None if it has no identity file; ConfigError if unusable."""
    path = disk / IDENTITY_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_IDENTITY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        return decode_identity(data)
    except ConfigError as exc:
        raise ConfigError(f"{path} is unusable: {exc}; move it away only if this disk is "
                          "this node's") from None


def look_at_disk(disk: Path) -> DiskSeen:
    """What `disk` holds, as far as Rimio is concerned. Writes nothing."""
    try:
        names = set(os.listdir(disk))
    except FileNotFoundError:
        return DiskSeen(str(disk), DiskState.MISSING)
    except NotADirectoryError:
        raise ConfigError(f"disk {disk} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"disk {disk} cannot be listed: {exc.strerror or exc}") from None
    if IDENTITY_FILE in names:
        return DiskSeen(str(disk), DiskState.OWNED, identity=read_identity(disk))
    if names & DATA_ENTRIES:
        return DiskSeen(str(disk), DiskState.LEGACY, legacy_owner=_legacy_owner(disk))
    return DiskSeen(str(disk), DiskState.BLANK)


def _legacy_owner(disk: Path) -> str | None:
    # `node.json` (rimio.storage.disk) names the node on a disk of an older
    # Rimio; an unreadable one is left for `claim_disk` to report.
    try:
        owner = json.loads((disk / NODE_FILE).read_text(encoding="utf-8"))["node_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return owner if isinstance(owner, str) else None


def survey_disks(disks: Sequence[Path]) -> list[DiskSeen]:
    return [look_at_disk(Path(d)) for d in disks]


def check_disks(disks: Sequence[Path], *, cluster: str, node_id: str,
                replacing: Collection[Path] = ()) -> list[DiskAction]:
    """The start-up decision for `disks`, or ConfigError; writes nothing."""
    return plan_disks(survey_disks(disks), cluster=cluster, node_id=node_id,
                      replacing={str(p) for p in replacing})


def claim_identities(disks: Sequence[Path], *, cluster: str, node_id: str, now: float,
                     replacing: Collection[Path] = (), only_replacing: bool = False) -> int:
    """Decide again (the caller holds the disks' locks now) and write the
    identities the decision asks for. With `only_replacing`, only the disks in
    `replacing` are written (`rimio admin init-disk`). Returns how many were written."""
    seen = survey_disks(disks)
    actions = plan_disks(seen, cluster=cluster, node_id=node_id,
                         replacing={str(p) for p in replacing})
    wanted = {str(p) for p in replacing}
    written = 0
    for index, (disk, action) in enumerate(zip(seen, actions, strict=True)):
        if action is DiskAction.KEEP or (only_replacing and disk.path not in wanted):
            continue
        identity = DiskIdentity(cluster=cluster, node_id=node_id, disk_uuid=str(uuid.uuid4()),
                                disk_index=index, created_at=now)
        write_identity(Path(disk.path), identity)
        written += 1
        if action is DiskAction.ADOPT:
            log.warning("disk %s of node %s was written by an older Rimio: recorded its "
                        "identity (%s)", disk.path, node_id, IDENTITY_FILE)
        elif disk.path in wanted:
            log.warning("disk %s of node %s initialised as a new disk; its data comes back "
                        "from the other replicas", disk.path, node_id)
        else:
            log.info("disk %s initialised for node %s of cluster %s", disk.path, node_id,
                     cluster)
    return written


def write_identity(disk: Path, identity: DiskIdentity) -> None:
    """Write `disk`'s identity file atomically (the directory is made if missing)."""
    ensure_dir(disk)
    tmp = disk / f".{IDENTITY_FILE}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(encode_identity(identity))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, disk / IDENTITY_FILE)
        fsync_dir(disk)
    except OSError as exc:
        raise ConfigError(f"disk {disk}: cannot write {IDENTITY_FILE}: "
                          f"{exc.strerror or exc}") from None


def init_disks(disks: Sequence[Path], *, cluster: str, node_id: str,
               replacing: Collection[Path], now: float) -> int:
    """`rimio admin init-disk`: give the blank disks in `replacing` this node's
    identity, so the node starts with them (their data comes back from the
    other replicas). The node must be stopped: every one of its disks is
    locked while this runs. Refuses, writing nothing, unless each disk named
    is blank or missing and every other disk is this node's or blank."""
    if not replacing:
        raise ConfigError("name at least one disk to initialise")
    check_disks(disks, cluster=cluster, node_id=node_id, replacing=replacing)
    fds: list[int] = []
    try:
        for disk in disks:
            fds.append(lock_disk(Path(disk)))
        return claim_identities(disks, cluster=cluster, node_id=node_id, now=now,
                                replacing=replacing, only_replacing=True)
    finally:
        for fd in fds:
            os.close(fd)
