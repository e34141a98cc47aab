"""Signed internal requests (RFC 0005 §3): HMAC-SHA256 over method, target,
timestamp, nonce and body digest, with a bounded clock skew and a replay
window. Pure: the caller passes the time and keeps the `ReplayGuard`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

HEADER_TIMESTAMP = "X-Rimio-Timestamp"
HEADER_NONCE = "X-Rimio-Nonce"
HEADER_DIGEST = "X-Rimio-Content-SHA256"
HEADER_SIGNATURE = "X-Rimio-Signature"
DEFAULT_MAX_SKEW = 30.0


class AuthError(Exception):
    """An internal request whose signature does not verify."""


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _message(method: str, target: str, timestamp: str, nonce: str, digest: str) -> bytes:
    return "\n".join(["rimio-v1", method.upper(), target, timestamp, nonce, digest]).encode()


def sign(key: bytes, method: str, target: str, body: bytes, now: float,
         nonce: str | None = None) -> dict[str, str]:
    """Headers that authenticate one request; `target` is path plus query."""
    ts = f"{now:.3f}"
    nonce = nonce or os.urandom(12).hex()
    digest = body_digest(body)
    mac = hmac.new(key, _message(method, target, ts, nonce, digest), hashlib.sha256).hexdigest()
    return {HEADER_TIMESTAMP: ts, HEADER_NONCE: nonce, HEADER_DIGEST: digest,
            HEADER_SIGNATURE: f"v1={mac}"}


class ReplayGuard:
    """Remembers nonces seen within the skew window; bounded in size."""

    def __init__(self, window: float = DEFAULT_MAX_SKEW, capacity: int = 100_000) -> None:
        self.window = window
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check_and_remember(self, nonce: str, now: float) -> bool:
        while self._seen:
            seen_at = next(iter(self._seen.values()))
            if seen_at >= now - 2 * self.window and len(self._seen) < self._capacity:
                break
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


@dataclass(frozen=True, slots=True)
class Verified:
    digest: str


def verify(keys: list[bytes], method: str, target: str, headers: Mapping[str, str], now: float,
           guard: ReplayGuard, max_skew: float = DEFAULT_MAX_SKEW) -> Verified:
    """Check the signature headers; the caller then checks the body against `digest`.

    `headers` must look names up case-insensitively, as HTTP header maps do.
    """
    try:
        ts = headers[HEADER_TIMESTAMP]
        nonce = headers[HEADER_NONCE]
        digest = headers[HEADER_DIGEST]
        sig = headers[HEADER_SIGNATURE]
    except KeyError as missing:
        raise AuthError(f"missing {missing.args[0]} header") from None
    if not sig.startswith("v1=") or len(nonce) > 64 or len(digest) != 64 or len(ts) > 32:
        raise AuthError("malformed signature headers")
    try:
        sent_at = float(ts)
    except ValueError:
        raise AuthError("malformed timestamp") from None
    if not abs(now - sent_at) <= max_skew:
        raise AuthError("timestamp outside the allowed clock skew")
    message = _message(method, target, ts, nonce, digest)
    given = sig[3:]
    if not any(hmac.compare_digest(hmac.new(k, message, hashlib.sha256).hexdigest(), given)
               for k in keys):
        raise AuthError("bad signature")
    if not guard.check_and_remember(nonce, now):
        raise AuthError("replayed request")
    return Verified(digest)
