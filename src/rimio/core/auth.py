"""Signed internal requests (RFC 0005 §3): HMAC-SHA256 over method, target,
destination node id, timestamp, nonce and body digest, with a bounded clock
skew and a replay window. Pure: the caller passes the time and keeps the
`ReplayGuard`.

The destination binds a request to the node it was meant for: a request
captured on its way to one node does not verify at another. A sender that
does not know the id of the node at an address yet (a seed, while joining)
signs for `ANY_DESTINATION`; only the routes that a joining node must reach
by address accept it (see `rimio.api.internal`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

HEADER_TIMESTAMP = "X-Rimio-Timestamp"
HEADER_NONCE = "X-Rimio-Nonce"
HEADER_DIGEST = "X-Rimio-Content-SHA256"
HEADER_DESTINATION = "X-Rimio-Destination"
HEADER_SIGNATURE = "X-Rimio-Signature"
DEFAULT_MAX_SKEW = 30.0
# Signed for when the sender knows only the address (a seed while joining).
ANY_DESTINATION: Final = "*"
# The digest header of a streamed body, whose hash is not known when the
# headers go out (a replica's part upload). Every route compares the body
# with the signed digest except the one that takes a streamed body, which
# stores it under its content hash and lets the signed head name it.
STREAMED_BODY: Final = "streamed"

# What well-formed headers look like; anything else (non-ASCII included) is
# refused before any comparison, so it can only ever be a 401.
_SIGNATURE = re.compile(r"v1=[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9A-Za-z_-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,20}(\.[0-9]{1,9})?")
_DESTINATION = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces


class AuthError(Exception):
    """An internal request whose signature does not verify."""


class ReplayCacheFull(AuthError):
    """Too many recent nonces to remember one more: refuse rather than forget
    one still inside the replay window (the caller answers 503)."""


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _message(method: str, target: str, destination: str, timestamp: str, nonce: str,
             digest: str) -> bytes:
    return "\n".join(["rimio-v2", method.upper(), target, destination, timestamp, nonce,
                      digest]).encode()


def sign(key: bytes, method: str, target: str, body: bytes | None, now: float, *,
         destination: str, nonce: str | None = None) -> dict[str, str]:
    """Headers that authenticate one request to the node `destination` (its
    id, or `ANY_DESTINATION`); `target` is path plus query. `body` None: a
    streamed body, signed as `STREAMED_BODY`."""
    ts = f"{now:.3f}"
    nonce = nonce or os.urandom(12).hex()
    digest = STREAMED_BODY if body is None else body_digest(body)
    message = _message(method, target, destination, ts, nonce, digest)
    mac = hmac.new(key, message, hashlib.sha256).hexdigest()
    return {HEADER_TIMESTAMP: ts, HEADER_NONCE: nonce, HEADER_DIGEST: digest,
            HEADER_DESTINATION: destination, HEADER_SIGNATURE: f"v1={mac}"}


class ReplayGuard:
    """Remembers nonces seen within the replay window; bounded in size.

    A nonce is kept for twice the window (a request is accepted up to the
    window before or after our clock). When the cache is full of nonces still
    inside that span, new requests are refused (`ReplayCacheFull`): evicting
    one would let its request be replayed.
    """

    def __init__(self, window: float = DEFAULT_MAX_SKEW, capacity: int = 100_000) -> None:
        self.window = window
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, nonce: str, now: float) -> bool:
        """False for a nonce seen before; raises ReplayCacheFull when full."""
        horizon = now - 2 * self.window
        while self._seen:
            seen_at = next(iter(self._seen.values()))
            if seen_at >= horizon:
                break
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._capacity:
            raise ReplayCacheFull("too many recent internal requests; try again shortly")
        self._seen[nonce] = now
        return True


@dataclass(frozen=True, slots=True)
class Verified:
    digest: str


def verify(keys: list[bytes], method: str, target: str, headers: Mapping[str, str], now: float,
           guard: ReplayGuard, *, node_id: str, allow_any_destination: bool = False,
           max_skew: float = DEFAULT_MAX_SKEW) -> Verified:
    """Check the signature headers of a request received by node `node_id`;
    the caller then checks the body against `digest`.

    Only headers are read, so a caller can refuse a request before reading
    its body. `headers` must look names up case-insensitively, as HTTP header
    maps do. Raises AuthError (ReplayCacheFull when the guard is full).
    """
    try:
        ts = headers[HEADER_TIMESTAMP]
        nonce = headers[HEADER_NONCE]
        digest = headers[HEADER_DIGEST]
        destination = headers[HEADER_DESTINATION]
        sig = headers[HEADER_SIGNATURE]
    except KeyError as missing:
        raise AuthError(f"missing {missing.args[0]} header") from None
    well_formed = (_SIGNATURE.fullmatch(sig) and _NONCE.fullmatch(nonce)
                   and (_DIGEST.fullmatch(digest) or digest == STREAMED_BODY)
                   and _TIMESTAMP.fullmatch(ts)
                   and _DESTINATION.fullmatch(destination))
    if not well_formed:
        raise AuthError("malformed signature headers")
    if destination != node_id and not (allow_any_destination
                                       and destination == ANY_DESTINATION):
        raise AuthError(f"request is addressed to {destination!r}, not to this node")
    sent_at = float(ts)
    if not abs(now - sent_at) <= max_skew:
        raise AuthError("timestamp outside the allowed clock skew")
    message = _message(method, target, destination, ts, nonce, digest)
    given = sig[3:]
    if not any(hmac.compare_digest(hmac.new(k, message, hashlib.sha256).hexdigest(), given)
               for k in keys):
        raise AuthError("bad signature")
    if not guard.check_and_remember(nonce, now):
        raise AuthError("replayed request")
    return Verified(digest)
