"""A node's claim on its disks: usability check, exclusive lock and identity.

Before a node writes anything it checks that each disk is (or can become) a
writable directory; it then holds an exclusive lock on every disk for its
whole life, and records in the first disk's `node.json` which node the disk
belongs to and how many times that node has started (its incarnation).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from rimio.core.errors import ConfigError
from rimio.storage.parts import ensure_dir

NODE_FILE = "node.json"
LOCK_FILE = ".lock"


def check_disk_usable(path: Path) -> None:
    """Raise ConfigError unless `path` is (or can become) a writable directory.

    Writes nothing: it only looks at the path and its nearest existing parent.
    """
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if p == path and not path.is_dir():
        raise ConfigError(f"disk {path} exists and is not a directory")
    if not p.is_dir():
        raise ConfigError(f"disk {path}: {p} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"disk {path}: {p} is not writable")


def lock_disk(disk: Path) -> int:
    """Take the disk's exclusive lock (held until the fd closes); one node per disk.

    Two processes on one disk would each clean up the other's in-flight
    writes at start-up; the lock makes the second one refuse to start.
    """
    ensure_dir(disk)
    fd = os.open(disk / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"disk {disk} is in use by another rimio process") from None
    return fd


def claim_disk(disk: Path, node_id: str) -> int:
    """Check that `disk` belongs to this node and return its next incarnation.

    The incarnation rises on every start, so a restarted node's `alive` beats
    whatever the cluster remembers about its previous life.
    """
    path = disk / NODE_FILE
    incarnation = 0
    if path.exists():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            owner, incarnation = str(state["node_id"]), int(state["incarnation"]) + 1
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} is unreadable; remove it only if the disk is this "
                              "node's") from None
        if owner != node_id:
            raise ConfigError(f"disk {disk} belongs to node {owner!r}, not {node_id!r}")
    tmp = disk / f".{NODE_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"node_id": node_id, "incarnation": incarnation}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return incarnation
