"""Where the scrub's pass is (rfcs/0017-scrub.md): the slot and the last path
checked, kept in a small file on the node's first disk so that a restarted
node resumes its pass instead of starting over (a pass over a large node
takes longer than it may stay up).

Best effort: written through a temp file and a rename, not fsynced (a lost
position only means parts are checked again), and a file that does not
parse is ignored. Blocking; callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

POSITION_FILE = "scrub-position.json"
_MAX_BYTES = 16 * 1024


def load_position(disk: Path, total_slots: int) -> tuple[int, str | None] | None:
    """The position saved on `disk` (None: none, or not readable)."""
    try:
        with open(disk / POSITION_FILE, "rb") as f:
            raw = json.loads(f.read(_MAX_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    slot, after = raw.get("slot"), raw.get("after")
    if type(slot) is not int or not 0 <= slot < total_slots:
        return None
    if after is not None and (type(after) is not str or len(after) > 4096):
        return None
    return slot, after


def save_position(disk: Path, position: tuple[int, str | None] | None) -> None:
    """Remember `position` on `disk` (None: the pass ended, forget it)."""
    target = disk / POSITION_FILE
    if position is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        return
    temp = disk / f".{POSITION_FILE}.tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump({"slot": position[0], "after": position[1]}, f)
    os.replace(temp, target)
