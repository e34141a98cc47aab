"""The node's record of when it was last in touch with its peers (RFC 0015
§4), kept in a small file on its first disk so that it survives a restart.

`<disk>/contact.json` holds `{"last_contact": <wall seconds>}`; it is
written to a temporary name, fsynced and renamed, so a crash leaves the old
record or the new one, never half of one. A missing or unreadable record
reads as None (a node that never recorded one is not held out of touch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rimio.storage.parts import fsync_dir

CONTACT_FILE = "contact.json"


def read_contact(disk: Path) -> float | None:
    try:
        raw = json.loads((disk / CONTACT_FILE).read_text())
        value = raw["last_contact"]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return None


def write_contact(disk: Path, when: float) -> None:
    target = disk / CONTACT_FILE
    temp = disk / (CONTACT_FILE + ".tmp")
    with open(temp, "w") as f:
        json.dump({"last_contact": when}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, target)
    fsync_dir(disk)
