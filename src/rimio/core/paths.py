"""Blob path rules: normalisation, validation and the on-disk name of a path.

A client path is normalised (leading `/` stripped, `//` collapsed) and then
validated; anything that could escape the slot directory or confuse the
layout is refused with `BadRequest`. `disk_segments` maps a valid path to
directory names that can never collide with the `g.<generation>` and
`part.*` names the storage layout uses inside a blob directory (RFC 0001).
"""

from __future__ import annotations

import hashlib

from rimio.core.errors import InvalidPath

MAX_PATH_BYTES = 1024
# Linux NAME_MAX is 255 bytes; escaped segments longer than this are hashed.
_MAX_SEGMENT_NAME = 200


def normalize_path(raw: str) -> str:
    """Return the canonical form of a blob path, or raise `InvalidPath`.

    Normalisation is idempotent: `normalize_path(normalize_path(p)) ==
    normalize_path(p)` for every accepted `p`.
    """
    if not isinstance(raw, str):
        raise InvalidPath("path must be a string")
    for ch in raw:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            raise InvalidPath("path contains a NUL or control character")
    segments = [s for s in raw.split("/") if s != ""]
    if not segments:
        raise InvalidPath("path is empty")
    for seg in segments:
        if seg in (".", ".."):
            raise InvalidPath("path contains a '.' or '..' segment")
    path = "/".join(segments)
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path is longer than {MAX_PATH_BYTES} bytes")
    return path


def _escape_segment(seg: str) -> str:
    # '%' is the escape character. A segment that starts like a generation
    # directory ('g.'), a part file ('part.') or a hidden/temp name ('.') gets
    # its first character escaped, so the mapping stays injective and a path
    # segment can never be mistaken for a name the layout itself uses.
    out = seg.replace("%", "%25")
    if out.startswith(("g.", "part.", ".")):
        out = f"%{ord(out[0]):02X}" + out[1:]
    if len(out.encode("utf-8")) > _MAX_SEGMENT_NAME:
        out = "%H" + hashlib.sha256(seg.encode("utf-8")).hexdigest()
    return out


def disk_segments(path: str) -> list[str]:
    """Directory names (relative to `blobs/`) that hold a normalised path."""
    return [_escape_segment(seg) for seg in path.split("/")]
