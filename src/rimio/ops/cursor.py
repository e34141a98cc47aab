"""Opaque list cursors: the last path of a page, base64url-encoded."""

from __future__ import annotations

import base64
import binascii

from rimio.errors import BadRequest


def encode_cursor(last_path: str) -> str:
    return base64.urlsafe_b64encode(last_path.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    if len(cursor) > 2048:
        raise BadRequest("cursor is too long")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        path = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        decoded = path.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        decoded = ""
    if not decoded:
        raise BadRequest("cursor is not one this server issued")
    return decoded
