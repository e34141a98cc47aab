"""Client tokens: an ASGI middleware in front of the node's whole application.

With an `access` section, every request outside `/internal/` (which the
cluster key guards) and other than `GET /api/v1/healthz` must carry
`Authorization: Bearer <token>`. A missing or unknown token gets `401` with
`WWW-Authenticate: Bearer`; a `read` token on anything but GET or HEAD gets
`403`. It wraps the whole app rather than hooking into the router, so every
route, however it is served, passes through it; everything else is
refused by default rather than let through.

Only SHA-256 digests of the tokens are configured. The presented token is
hashed and compared with every configured digest by `hmac.compare_digest`
(no early exit), so neither the comparison nor which entry matched leaks
through timing. Tokens are never logged; token *names* are.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from rimio.api.asgi_io import send_json
from rimio.api.errors import error_body
from rimio.config import AccessToken, Scope

ASGIScope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

log = logging.getLogger("rimio.access")

HEALTHZ = "/api/v1/healthz"
INTERNAL_PREFIX = "/internal/"
_READ_METHODS = frozenset({"GET", "HEAD"})
_BEARER = b"bearer "


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token, as configured in `access.tokens[].sha256` (hex)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def needed_scope(method: str) -> Scope:
    return Scope.READ if method.upper() in _READ_METHODS else Scope.WRITE


def bearer_token(scope: ASGIScope) -> bytes | None:
    """The token of the request's `Authorization: Bearer` header, if any."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            value = bytes(value).strip()
            if value[:len(_BEARER)].lower() == _BEARER:
                return value[len(_BEARER):].strip() or None
            return None
    return None


def _has_body(scope: ASGIScope) -> bool:
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if (name == b"content-length" and value.strip() != b"0") or (
                name == b"transfer-encoding"):
            return True
    return False


class AccessControl:
    """Wraps an ASGI app; passes allowed requests through unchanged."""

    def __init__(self, app: Any, tokens: Sequence[AccessToken]) -> None:
        if not tokens:
            raise ValueError("AccessControl needs at least one token")
        self._app: ASGIApp = app
        self._tokens = tuple(tokens)

    def match(self, presented: bytes) -> AccessToken | None:
        """The configured token whose digest equals the presented token's, if any.

        Every entry is compared, in constant time, whatever matched first."""
        digest = hashlib.sha256(presented).digest()
        found: AccessToken | None = None
        for token in self._tokens:
            if hmac.compare_digest(digest, token.sha256):
                found = token
        return found

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or self._exempt(scope):
            await self._app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        presented = bearer_token(scope)
        token = None if presented is None else self.match(presented)
        if token is None:
            # Which of "none" and "unknown" it was is all the log says.
            log.info("refused %s %s: %s token", method, scope.get("path", ""),
                     "no" if presented is None else "an unknown")
            await _refuse(scope, send, 401, "unauthorized",
                          "this API needs a token: Authorization: Bearer <token>")
            return
        needed = needed_scope(method)
        if not token.scope.allows(needed):
            log.info("refused %s %s: token %r has scope %s", method, scope.get("path", ""),
                     token.name, token.scope.value)
            await _refuse(scope, send, 403, "forbidden",
                          f"token {token.name!r} may only read")
            return
        await self._app(scope, receive, send)

    @staticmethod
    def _exempt(scope: ASGIScope) -> bool:
        path = str(scope.get("path", ""))
        if path == HEALTHZ:
            return True
        # Node-to-node routes carry the cluster key's signatures instead. The
        # raw target must agree, and no dot segment may lead elsewhere.
        raw = bytes(scope.get("raw_path") or path.encode("utf-8"))
        return (path.startswith(INTERNAL_PREFIX) and raw.startswith(INTERNAL_PREFIX.encode())
                and "/.." not in path)


async def _refuse(scope: ASGIScope, send: Send, status: int, code: str, message: str) -> None:
    headers: list[tuple[bytes, bytes]] = []
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="rimio"'))
    if _has_body(scope):
        # The body stays unread: the connection cannot carry another request.
        headers.append((b"connection", b"close"))
    await send_json(send, status, error_body(code, message), headers)


def with_access(app: Any, tokens: Sequence[AccessToken] | None) -> Any:
    """`app` behind token checks, or `app` itself when no tokens are configured.

    (`Any`: ASGI frameworks type their callables each their own way.)"""
    return app if not tokens else AccessControl(app, tokens)
