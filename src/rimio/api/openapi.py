"""The OpenAPI 3.1 description of the public API (`/api/v1`), served at
`GET /api/v1/openapi.json`.

Built as data here, beside the routes it describes, so a change of a route
and of its description are one change. It lists every status each route can
answer with: the route's own, plus those any request can get — `401`/`403`
from access control when it is configured, `503` when the node is busy, has
lost its quorum or cannot use its disk, `507` when its disk is full. The fuzz
tests (`tests/fuzz`) hold the node to it.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from rimio.ops.objects import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT

OPENAPI_PATH = "/api/v1/openapi.json"
_JSON = "application/json"
_BYTES = "application/octet-stream"

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }},
}

_WHY = {
    400: "The request is malformed (path, header or parameter).",
    401: "Access control is configured and the request carries no valid token.",
    403: "The request's token does not allow this operation.",
    404: "Nothing was ever written at this path.",
    408: "The request body arrived slower than the server's minimum rate.",
    409: "The write id was used by another operation on this path.",
    410: "The object was deleted.",
    412: "The object does not match If-Match / If-None-Match.",
    413: "The object is larger than the cluster's limit.",
    416: "The range selects no byte of the object.",
    503: "The node is busy (see Retry-After), cannot reach enough replicas of the object "
         "(quorum_lost), cannot tell whether a write reached enough (outcome_unknown: retry "
         "with the same X-Rimio-Write-Id), or cannot use its disk.",
    507: "The node's disk is full.",
}
# What any request can be answered with, besides its route's own statuses.
_ANY = (401, 403, 503)


def _error(status: int) -> dict[str, Any]:
    return {"description": _WHY[status],
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _error(s) for s in sorted({*statuses, *_ANY})}


def _json(description: str, schema: dict[str, Any],
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "content": {_JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _header(description: str, *, required: bool = False,
            schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "required": required,
            "schema": schema or {"type": "string"}}


def _param(name: str, where: str, description: str, schema: dict[str, Any], *,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "required": required,
            "schema": schema}


_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_PATH_PARAM = _param("path", "path", "The object's path (`/` percent-encoded as %2F or not).",
                     {"type": "string", "minLength": 1, "maxLength": 1024}, required=True)
_WRITE_ID = _param("X-Rimio-Write-Id", "header",
                   "Makes a retry safe: the same id on the same path returns the first answer.",
                   {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"})

_WRITE_RESULT = _obj(
    ["path", "slot_id", "generation", "committed_replicas"],
    path=_STR, slot_id=_INT, generation=_INT, committed_replicas=_INT,
    etag=_STR, size_bytes=_INT, deleted={"type": "boolean"},
    idempotent_replay={"type": "boolean"},
)
_OBJECT_HEADERS = {
    "ETag": _header("The quoted hex SHA-256 of the whole object.", required=True),
    "X-Rimio-Generation": _header("The object's generation.", required=True),
    "Accept-Ranges": _header("Always `bytes`."),
    "Content-Length": _header("The length of the body (or of the range)."),
    "X-Rimio-Read-Quorum": _header("`degraded` when fewer replicas than a read quorum "
                                   "answered: the newest write may be missing."),
}
_BYTES_BODY = {_BYTES: {"schema": {"type": "string", "format": "binary"}}}


def _blob_item() -> dict[str, Any]:
    read_params = [
        _PATH_PARAM,
        _param("Range", "header", "One range: `bytes=a-b`, `bytes=a-` or `bytes=-n`.", _STR),
        _param("If-Range", "header", "Serve the range only if the ETag still matches.", _STR),
    ]
    ranged = {**_OBJECT_HEADERS, "Content-Range": _header("The range served.", required=True)}
    return {
        "put": {
            "operationId": "putBlob",
            "summary": "Write an object (a new generation).",
            "parameters": [
                _PATH_PARAM, _WRITE_ID,
                _param("If-Match", "header", "Replace only these versions (quoted ETags or *).",
                       _STR),
                _param("If-None-Match", "header", "Only `*`: create only.", {"enum": ["*"]}),
            ],
            "requestBody": {"required": True, "content": _BYTES_BODY},
            "responses": {
                "201": _json("Written.", _WRITE_RESULT, {"ETag": _header("", required=True)}),
                "200": _json("A replay of a write id: the first answer.", _WRITE_RESULT),
                **_errors(400, 408, 409, 412, 413, 507),
            },
        },
        "get": {
            "operationId": "getBlob",
            "summary": "Read an object, or one byte range of it.",
            "parameters": read_params,
            "responses": {
                "200": {"description": "The object.", "headers": _OBJECT_HEADERS,
                        "content": _BYTES_BODY},
                "206": {"description": "The range.", "headers": ranged, "content": _BYTES_BODY},
                **_errors(400, 404, 410, 416),
            },
        },
        "head": {
            "operationId": "headBlob",
            "summary": "An object's headers.",
            "parameters": read_params,
            "responses": {
                "200": {"description": "The object's headers.", "headers": _OBJECT_HEADERS},
                "206": {"description": "The range's headers.", "headers": ranged},
                **{str(s): {"description": _WHY[s]}
                   for s in sorted({400, 404, 410, 416, *_ANY})},
            },
        },
        "delete": {
            "operationId": "deleteBlob",
            "summary": "Delete an object (a tombstone generation).",
            "parameters": [_PATH_PARAM, _WRITE_ID],
            "responses": {
                "200": _json("Deleted (or already deleted).", _WRITE_RESULT),
                **_errors(400, 404, 409, 507),
            },
        },
    }


def _listing() -> dict[str, Any]:
    item = _obj(["path", "generation", "etag", "size_bytes", "deleted", "updated_at"],
                path=_STR, generation=_INT, etag={"type": ["string", "null"]},
                size_bytes=_INT, deleted={"type": "boolean"}, updated_at={"type": "number"})
    return {"get": {
        "operationId": "listBlobs",
        "summary": "A page of the cluster-wide listing, sorted by path.",
        "parameters": [
            _param("prefix", "query", "Only paths starting with this.", _STR),
            _param("limit", "query", f"Items per page (default {DEFAULT_LIST_LIMIT}).",
                   {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT}),
            _param("cursor", "query", "The `next_cursor` of the previous page.", _STR),
            _param("include_deleted", "query", "List tombstones too.",
                   {"enum": ["true", "false", "1", "0"]}),
        ],
        "responses": {
            "200": _json("A page.", _obj(["items", "next_cursor"],
                                         items={"type": "array", "items": item},
                                         next_cursor={"type": ["string", "null"]})),
            **_errors(400),
        },
    }}


def _simple(operation_id: str, summary: str, schema: dict[str, Any],
            parameters: list[dict[str, Any]] | None = None,
            *statuses: int) -> dict[str, Any]:
    return {"get": {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters or [],
        "responses": {"200": _json(summary, schema), **_errors(*statuses)},
    }}


def _counters(description: str, *names: str, **others: Any) -> dict[str, Any]:
    """A status section: counters (integers from 0) named `names`, and `others`."""
    props = {n: _INT for n in names} | others
    return {"type": "object", "description": description, "required": sorted(props),
            "properties": props}


_NULL_STR = {"type": ["string", "null"]}
_SECONDS = {"type": "number"}


def status_schema() -> dict[str, Any]:
    """`GET /api/v1/status` (RFC 0018). The head is always there; a section is
    there when the node runs the service behind it."""
    return {
        "type": "object",
        "required": ["node_id", "cluster", "time", "uptime_seconds", "layout_version",
                     "slots_held", "unavailable"],
        "properties": {
            "node_id": _STR, "cluster": _STR,
            "time": {"type": "number", "description": "The node's wall clock (seconds since "
                     "1970) when it made this answer: compare the other times with it."},
            "uptime_seconds": {"type": "number", "minimum": 0},
            "layout_version": _INT,
            "slots_held": {"type": "integer", "minimum": 0,
                           "description": "Slot replicas the layout gives this node."},
            "anti_entropy": _counters(
                "Digest comparison with the other holders of this node's slots (RFC 0014). "
                "`backlog`: slots found differing with the peer being compared and not yet "
                "repaired. `last_full_round`: when the last round that compared every peer "
                "without a failure ended (null: none yet). Pulled: repaired here from a "
                "peer; pushed: repaired on a peer from here.",
                "rounds", "slots_compared", "slots_differing", "heads_pulled", "heads_pushed",
                "parts_pulled", "parts_pushed", "bytes_pulled", "bytes_pushed", "bytes_moved",
                "failures",
                "stale_forgotten",
                backlog={"type": "integer"}, last_full_round={"type": ["number", "null"]},
                last_round_seconds=_SECONDS, last_error=_NULL_STR,
                last_contact={"type": ["number", "null"]}, resyncing={"type": "boolean"}),
            "read_repair": _counters(
                "Replicas a read found behind, brought up to date in the background; "
                "`refetched`: lost parts (corrupt, missing) sent to be fetched again.",
                "repaired", "failed", "skipped", "refetched"),
            "verify": _counters(
                "Part files checked against their sha256 as they were read (RFC 0013), "
                "those that failed, and those quarantined.",
                "verified_parts", "errors", "quarantined"),
            "movement": _counters(
                "Slot movement after a layout change: what was copied in and dropped, "
                "and the backlog (`to_copy`, `to_drop`) after the last pass.",
                "slots_copied", "slots_dropped", "slots_swept", "heads_copied",
                "bytes_copied", "slot_failures", "passes", "to_copy", "to_drop",
                last_error=_NULL_STR),
            "scrub": _counters(
                "The background re-hashing of part files (RFC 0017): parts and bytes "
                "checked, those found corrupt or missing, those fetched again from a "
                "replica and those no replica could give; `last_pass`: when the last "
                "complete pass ended (null: none yet).",
                "parts_checked", "bytes_checked", "corrupt", "missing", "refetched",
                "refetch_failed", "passes", last_pass={"type": ["number", "null"]}),
            "gc": _counters(
                "Garbage collection (RFC 0016): superseded heads and orphan files removed, "
                "files unlinked and bytes freed, write results expired, journal entries "
                "finished at start, orphans being watched; `last_sweep`: when the last "
                "sweep ended (0: none yet).",
                "superseded_removed", "orphans_removed", "files_unlinked", "bytes_freed",
                "write_results_expired", "journal_replayed", "orphans_watched", "sweeps",
                last_sweep=_SECONDS),
            "tombstones": _counters(
                "Tombstone purging (RFC 0015): passes, tombstones purged from every replica "
                "of their slot, slots whose purge waited for a holder; `last_pass`: when "
                "the last pass ended (null: none yet).",
                "passes", "purged", "deferred", last_pass={"type": ["number", "null"]}),
            "unavailable": {"type": "object", "additionalProperties": _STR,
                            "description": "Sections left out because reading their "
                            "counters failed, each with the error."},
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The document, built once."""
    role = {"enum": ["joining", "active", "draining", "removed", None]}
    member = _obj(["node_id", "address", "status", "incarnation", "role", "slots"],
                  node_id=_STR, address=_STR, status=_STR, incarnation=_INT, role=role,
                  slots=_INT)
    cluster = _obj(["layout_version", "replicas", "write_quorum", "moving_slots"],
                   layout_version=_INT, replicas=_INT, write_quorum=_INT, moving_slots=_INT)
    placement = _obj(["path", "slot_id", "replicas", "write_quorum", "slot_epoch"],
                     path=_STR, slot_id=_INT, replicas={"type": "array", "items": _STR},
                     write_quorum=_INT, slot_epoch=_INT)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rimio object API", "version": "1",
                 "description": "The public API of a Rimio node; every node serves all of it."},
        "paths": {
            "/api/v1/blobs/{path}": _blob_item(),
            "/api/v1/blobs": _listing(),
            "/api/v1/healthz": _simple(
                "healthz", "The node serves.",
                _obj(["status", "node_id", "cluster"], status=_STR, node_id=_STR, cluster=_STR)),
            "/api/v1/nodes": _simple(
                "nodes", "The members this node knows, with their layout role and the "
                "number of slot replicas each holds.",
                _obj(["nodes"], nodes={"type": "array", "items": member})),
            "/api/v1/cluster": _simple(
                "cluster", "The layout this node follows: its version, R and W, and how "
                "many slots still move (0 once every slot sits where the layout wants it).",
                cluster),
            "/api/v1/status": _simple(
                "status", "This node's state and its background work: uptime, layout "
                "version, slots held, and the counters of anti-entropy, read repair, "
                "verified reads, slot movement, scrub and GC (RFC 0018).", status_schema()),
            "/api/v1/slots/resolve": _simple(
                "resolveSlot", "Where a path is placed.", placement,
                [_param("path", "query", "An object path.", _STR, required=True)], 400),
            OPENAPI_PATH: _simple("openapi", "This document.", {"type": "object"}),
        },
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }


@cache
def openapi_json() -> bytes:
    return json.dumps(openapi_document(), indent=1).encode()
