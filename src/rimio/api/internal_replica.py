"""`/internal/v1/slots/{slot}/...`: the replica protocol's routes (RFC 0011 §5).

Signed like every internal route, for this node's id (never
`ANY_DESTINATION`), with the signature headers checked before any body is
read. Bodies are bounded: a part upload by the part size (it streams to disk
as it arrives, signed as `STREAMED_BODY` since its hash is not known when its
headers go out; the part is stored under the hash of what arrived, and only
the signed head that names that hash can make it visible), an offer by what
its inline bytes and part list may take. Every bad input is a 4xx that says
what is wrong. `X-Rimio-Layout-Version`, when sent (always, on an offer),
goes to the node's layout check first: `409 stale_layout` with this
replica's version in the same header when the replica's layout is newer.

Routes under `/internal/v1/slots/{slot}` and their answers:

* `GET head?path=&write_id=`: `{"head": head|null, "write_result": map|null}`
* `PUT parts?path=&generation=&index=`: `{"index", "sha256", "size_bytes"}`
* `POST heads` (a msgpack offer, `rimio.core.replica_wire`):
  `{"applied": bool, "current": head|null}`
* `DELETE parts?path=&generation=`: 204
* `GET parts/{index}?path=&generation=&head=<head sha256>` with
  `Range: bytes=first-last` (within the part): 206 and the bytes (200 and the
  whole part without a Range)
* `PUT parts/{index}?path=&generation=&head=<head sha256>` (the part's bytes,
  streamed): put back one part of a head this replica holds, checked
  against its own part row (RFC 0017): `{"index", "sha256", "size_bytes"}`
* `GET heads?prefix=&after=&limit=`: `{"heads": [head, ...]}`

And `POST /internal/v1/digest`: a msgpack digest question, answered in
msgpack (`rimio.core.digest_wire`, RFC 0014 §3).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol

from quart import Blueprint, Response, request

from rimio.api.errors import LAYOUT_VERSION_HEADER
from rimio.api.http import json_response, parse_count
from rimio.core import digest_wire
from rimio.core.auth import STREAMED_BODY, Verified
from rimio.core.errors import BadRequest, PayloadTooLarge, Unauthorized
from rimio.core.offers import MAX_COUNT, is_sha256
from rimio.core.replica import RESYNCING_HEADER
from rimio.ops.first_chunk import rejoin
from rimio.ops.objects import MAX_LIST_LIMIT
from rimio.ops.replica_service import ReplicaService

SLOTS_PREFIX = "/internal/v1/slots"
DIGEST_PATH = "/internal/v1/digest"
_MAX_DIGITS = 19
_RANGE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{1,19})")
_MAX_WRITE_ID = 128
# A digest question names at most every slotlet of one slot, or MAX_NAMED
# heads (RFC 0015): their paths, and 80 bytes of each row beside.
_MAX_QUESTION_BYTES = 4096 + digest_wire.MAX_NAMED * (digest_wire.MAX_PATH + 80)


class Authenticator(Protocol):
    """How a route checks a request's signature (`InternalHandlers` is one)."""

    async def authenticated_body_of(self, limit: int, *,
                                    any_destination: bool = False) -> bytes: ...
    def verified_headers(self, *, any_destination: bool = False) -> Verified | None: ...


def _number(name: str, *, required: bool = True, default: int = 0) -> int:
    value = request.args.get(name)
    if value is None:
        if required:
            raise BadRequest(f"the {name!r} query parameter is required")
        return default
    return parse_count(value, _MAX_DIGITS, f"{name!r} is not a number")


def _path() -> str:
    path = request.args.get("path")
    if not path:
        raise BadRequest("the 'path' query parameter is required")
    return path


def _slot(raw: str) -> int:
    return parse_count(raw, _MAX_DIGITS, "the slot is not a number")


def _generation() -> int:
    generation = _number("generation")
    if not 1 <= generation <= MAX_COUNT:
        raise BadRequest("'generation' is between 1 and 2^62")
    return generation


class ReplicaHandlers:
    """The replica routes of one node: `auth` checks signatures, `replicas`
    serves the requests."""

    def __init__(self, auth: Authenticator, replicas: ReplicaService) -> None:
        self._auth = auth
        self._replicas = replicas

    def _layout(self, *, required: bool = False) -> int | None:
        value = request.headers.get(LAYOUT_VERSION_HEADER)
        if value is None:
            if required:
                raise BadRequest(f"{LAYOUT_VERSION_HEADER} is required")
            return None
        version = parse_count(value.strip(), _MAX_DIGITS,
                              f"{LAYOUT_VERSION_HEADER} is not a number")
        self._replicas.check_layout(version)
        return version

    def _serving(self) -> None:
        self._replicas.check_serving(_asker_resyncing())

    async def get_head(self, slot: str) -> Response:
        await self._auth.authenticated_body_of(0)
        self._layout()
        self._serving()
        write_id = request.args.get("write_id") or None
        if write_id is not None and len(write_id) > _MAX_WRITE_ID:
            raise BadRequest("'write_id' is too long")
        answer = await self._replicas.get_head(_slot(slot), _path(), write_id)
        return json_response({"head": None if answer.head is None else answer.head.to_dict(),
                              "write_result": answer.write_result})

    async def put_part(self, slot: str) -> Response:
        verified = self._auth.verified_headers()
        self._layout()
        number, path, generation = _slot(slot), _path(), _generation()
        index = _number("index")
        limit = self._replicas.part_size
        length = request.headers.get("Content-Length")
        if length is not None and parse_count(length, _MAX_DIGITS,
                                              "Content-Length is not a number") > limit:
            raise PayloadTooLarge(f"a part is at most {limit} bytes")
        if index >= self._replicas.max_parts:
            raise BadRequest(f"part index {index} is beyond the largest object's parts")
        info = await self._replicas.put_part(number, path, generation, index, _body())
        if verified is not None and verified.digest not in (info.sha256, STREAMED_BODY):
            # Signed with a hash, and the part that arrived is not it (stored
            # under its own hash, no head names it: an abort removes it).
            raise Unauthorized("internal request refused: body does not match its digest")
        return json_response({"index": info.index, "sha256": info.sha256,
                              "size_bytes": info.size_bytes})

    async def post_head(self, slot: str) -> Response:
        body = await self._auth.authenticated_body_of(self._replicas.max_offer_bytes)
        version = self._layout(required=True)
        assert version is not None
        answer = await self._replicas.apply(_slot(slot), body, version)
        return json_response({"applied": answer.applied,
                              "current": None if answer.current is None
                              else answer.current.to_dict()})

    async def delete_parts(self, slot: str) -> Response:
        await self._auth.authenticated_body_of(0)
        self._layout()
        await self._replicas.abort(_slot(slot), _path(), _generation())
        return Response(b"", status=204)

    async def get_part(self, slot: str, index: str) -> Response:
        await self._auth.authenticated_body_of(0)
        self._layout()
        self._serving()
        number, path, generation = _slot(slot), _path(), _generation()
        part = parse_count(index, _MAX_DIGITS, "the part index is not a number")
        if part > MAX_COUNT:
            raise BadRequest("the part index is out of range")
        head = request.args.get("head", "")
        if not is_sha256(head):
            raise BadRequest("'head' must be the SHA-256 of the head, in hex")
        start, end, status = 0, None, 200
        range_header = request.headers.get("Range")
        if range_header is not None:
            match = _RANGE.fullmatch(range_header.strip())
            if match is None:
                raise BadRequest("Range must be 'bytes=first-last' within the part")
            start, last = int(match.group(1)), int(match.group(2))
            if last < start:
                raise BadRequest("Range must not end before it starts")
            end, status = last + 1, 206
        first, rest = await self._replicas.open_part(number, path, generation, head, part,
                                                     start, end)

        headers = {"Content-Type": "application/octet-stream"}
        if end is not None:
            headers["Content-Length"] = str(end - start)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/*"
        return Response(rejoin(first, rest), status=status, headers=headers)

    async def restore_part(self, slot: str, index: str) -> Response:
        # Signed as STREAMED_BODY like an upload; the bytes need no signature:
        # they are installed only if they hash to this replica's own part row.
        self._auth.verified_headers()
        self._layout()
        number, path, generation = _slot(slot), _path(), _generation()
        part = parse_count(index, _MAX_DIGITS, "the part index is not a number")
        if part >= self._replicas.max_parts:
            raise BadRequest(f"part index {part} is beyond the largest object's parts")
        head = request.args.get("head", "")
        if not is_sha256(head):
            raise BadRequest("'head' must be the SHA-256 of the head, in hex")
        limit = self._replicas.part_size
        length = request.headers.get("Content-Length")
        if length is not None and parse_count(length, _MAX_DIGITS,
                                              "Content-Length is not a number") > limit:
            raise PayloadTooLarge(f"a part is at most {limit} bytes")
        info = await self._replicas.restore_part(number, path, generation, head, part, _body())
        return json_response({"index": info.index, "sha256": info.sha256,
                              "size_bytes": info.size_bytes})

    async def digest(self) -> Response:
        body = await self._auth.authenticated_body_of(_MAX_QUESTION_BYTES)
        answer = await self._replicas.digest(body, asker_resyncing=_asker_resyncing())
        return Response(answer, status=200, headers={"Content-Type": "application/msgpack"})

    async def list_heads(self, slot: str) -> Response:
        await self._auth.authenticated_body_of(0)
        self._layout()
        self._serving()
        args = request.args
        limit = parse_count(args.get("limit", "1000"), 9, "limit out of range")
        if not 1 <= limit <= MAX_LIST_LIMIT + 1:
            raise BadRequest("limit out of range")
        found = await self._replicas.list_heads(_slot(slot), args.get("prefix", ""),
                                                args.get("after"), limit)
        return json_response({"heads": [h.to_dict() for h in found]})


def _asker_resyncing() -> bool:
    return request.headers.get(RESYNCING_HEADER) == "1"


async def _body() -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


def add_replica_routes(bp: Blueprint, handlers: ReplicaHandlers) -> None:
    slot = f"{SLOTS_PREFIX}/<slot>"
    bp.add_url_rule(f"{slot}/head", "replica_head", handlers.get_head, methods=["GET"])
    bp.add_url_rule(f"{slot}/parts", "replica_put_part", handlers.put_part, methods=["PUT"])
    bp.add_url_rule(f"{slot}/parts", "replica_abort", handlers.delete_parts,
                    methods=["DELETE"])
    bp.add_url_rule(f"{slot}/heads", "replica_apply", handlers.post_head, methods=["POST"])
    bp.add_url_rule(f"{slot}/heads", "replica_heads", handlers.list_heads, methods=["GET"])
    bp.add_url_rule(f"{slot}/parts/<index>", "replica_part", handlers.get_part,
                    methods=["GET"])
    bp.add_url_rule(f"{slot}/parts/<index>", "replica_restore_part", handlers.restore_part,
                    methods=["PUT"])
    bp.add_url_rule(DIGEST_PATH, "replica_digest", handlers.digest, methods=["POST"])
