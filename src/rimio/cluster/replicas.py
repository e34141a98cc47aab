"""`HttpReplica`: a replica on another node, reached over the signed internal
API (RFC 0011 §5; the routes are `rimio.api.internal_replica`).

It implements `rimio.core.replica.Replica` with the node's pooled peer client
(`PeerClient.send_signed`): part uploads stream from the caller's chunks and
part reads stream to the caller, neither held whole in memory. Whatever goes
wrong on the way is named for the coordinator: unreachable, timed out, a 5xx
or an answer that does not parse is `ReplicaUnavailable`; `409 stale_layout`
is `StaleLayout` with the replica's version; `404 part_missing` is
`PartMissing`. Any other refusal (a 4xx: a request this node should not have
sent, or a key the replica does not share) is `ReplicaUnavailable` too, with
the replica's own words in the message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx

from rimio.cluster.peers import PeerClient
from rimio.core import digest_wire
from rimio.core.digest import HeadKey
from rimio.core.digest_wire import DigestQuestion, DigestWireError
from rimio.core.errors import PartCorrupt
from rimio.core.head import Head
from rimio.core.replica import (
    ApplyAnswer,
    HeadAnswer,
    PartInfo,
    PartMissing,
    ReplicaUnavailable,
    RestoreUnsupported,
    StaleLayout,
)
from rimio.core.replica_wire import Offer, encode_offer

SLOTS = "/internal/v1/slots"
DIGEST = "/internal/v1/digest"
# A digest answer (at most 64 K head rows of a path each) larger than this is not a replica's.
MAX_DIGEST_ANSWER_BYTES = 512 * 1024 * 1024
HEADS = "/internal/v1/heads"
LAYOUT_VERSION_HEADER = "X-Rimio-Layout-Version"
# A JSON answer (a head, a listing) larger than this is not a replica's.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_ERROR_BYTES = 64 * 1024
T = TypeVar("T")


class HttpReplica:
    """The replica of node `node_id` at `address` (host:port)."""

    def __init__(self, node_id: str, address: str, client: PeerClient) -> None:
        self._node_id = node_id
        self._address = address
        self._client = client

    @property
    def node_id(self) -> str:
        return self._node_id

    def __repr__(self) -> str:
        return f"HttpReplica({self._node_id!r}, {self._address!r})"

    # -- plumbing ---------------------------------------------------------------

    async def _send(self, method: str, target: str, *,
                    body: bytes | AsyncIterable[bytes] = b"",
                    headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The answer, streaming, once its status says it is a success."""
        try:
            resp = await self._client.send_signed(self._address, method, target,
                                                  node_id=self._node_id, body=body,
                                                  headers=headers)
        except httpx.HTTPError as exc:
            raise ReplicaUnavailable(f"{self._node_id} at {self._address} is unreachable "
                                     f"({type(exc).__name__})") from None
        if resp.status_code < 300:
            return resp
        try:
            raise await self._refusal(resp)
        finally:
            await resp.aclose()

    async def _refusal(self, resp: httpx.Response) -> Exception:
        code, message = "", ""
        try:
            raw = await _read(resp, _ERROR_BYTES)
            error = json.loads(raw)["error"]
            code, message = str(error["code"]), str(error["message"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        status = resp.status_code
        if status == 409 and code == "stale_layout":
            version = resp.headers.get(LAYOUT_VERSION_HEADER, "")
            if version.isascii() and version.isdigit() and len(version) <= 19:
                return StaleLayout(f"{self._node_id}: {message}", int(version))
        if status == 404 and code == "part_missing":
            return PartMissing(f"{self._node_id}: {message}")
        if status == 405:
            # A route this replica's version does not serve that way (the
            # single-part restore of RFC 0017 on an older node).
            return RestoreUnsupported(f"{self._node_id} answered 405: {message}".strip())
        if code == "part_corrupt":
            # The replica found its copy damaged (and quarantined it).
            return PartCorrupt(f"{self._node_id}: {message}")
        return ReplicaUnavailable(f"{self._node_id} answered {status} {code}: {message}".strip())

    async def _json(self, method: str, target: str, *, body: bytes | AsyncIterable[bytes] = b"",
                    headers: Mapping[str, str] | None = None) -> Any:
        resp = await self._send(method, target, body=body, headers=headers)
        try:
            return json.loads(await _read(resp, MAX_ANSWER_BYTES))
        except httpx.HTTPError as exc:
            raise ReplicaUnavailable(f"{self._node_id}: the answer broke off "
                                     f"({type(exc).__name__})") from None
        except ValueError:
            raise ReplicaUnavailable(
                f"{self._node_id} sent a malformed answer (not JSON)") from None
        finally:
            await resp.aclose()

    def _unreadable(self, what: str) -> ReplicaUnavailable:
        return ReplicaUnavailable(f"{self._node_id} sent a malformed {what}")

    def _head(self, raw: Any) -> Head | None:
        try:
            return None if raw is None else Head.from_dict(raw)
        except ValueError:  # MalformedHead
            raise self._unreadable("head") from None

    # -- the protocol -----------------------------------------------------------

    async def get_head(self, slot: int, path: str, write_id: str | None = None) -> HeadAnswer:
        query = {"path": path, **({"write_id": write_id} if write_id else {})}
        answer = await self._json("GET", f"{SLOTS}/{slot}/head?{urlencode(query)}")
        try:
            result = answer["write_result"]
            if result is not None and not isinstance(result, dict):
                raise TypeError("write_result")
            return HeadAnswer(self._head(answer["head"]), result)
        except (KeyError, TypeError):
            raise self._unreadable("head answer") from None

    async def put_part(self, slot: int, path: str, generation: int, index: int,
                       chunks: AsyncIterable[bytes]) -> PartInfo:
        query = urlencode({"path": path, "generation": generation, "index": index})
        answer = await self._json("PUT", f"{SLOTS}/{slot}/parts?{query}", body=_bytes(chunks))
        try:
            info = PartInfo(int(answer["index"]), str(answer["sha256"]),
                            int(answer["size_bytes"]))
        except (KeyError, TypeError, ValueError):
            raise self._unreadable("part answer") from None
        if info.index != index:
            raise self._unreadable("part answer (another index)")
        return info

    async def apply_head(self, head: Head, parts: Sequence[PartInfo], inline: bytes | None,
                         write_result: dict[str, Any] | None,
                         layout_version: int) -> ApplyAnswer:
        body = encode_offer(Offer(head, tuple(parts), inline, write_result))
        answer = await self._json("POST", f"{SLOTS}/{head.slot_id}/heads", body=body,
                                  headers={LAYOUT_VERSION_HEADER: str(layout_version)})
        try:
            applied = answer["applied"]
            if not isinstance(applied, bool):
                raise TypeError("applied")
            return ApplyAnswer(applied, self._head(answer["current"]))
        except (KeyError, TypeError):
            raise self._unreadable("apply answer") from None

    async def abort(self, slot: int, path: str, generation: int) -> None:
        query = urlencode({"path": path, "generation": generation})
        resp = await self._send("DELETE", f"{SLOTS}/{slot}/parts?{query}")
        await resp.aclose()

    async def restore_part(self, head: Head, index: int,
                           chunks: AsyncIterable[bytes]) -> PartInfo:
        query = urlencode({"path": head.path, "generation": head.generation,
                           "head": head.sha256})
        # A node from before RFC 0017 answers 405 (RestoreUnsupported): only GET there.
        answer = await self._json("PUT", f"{SLOTS}/{head.slot_id}/parts/{index}?{query}",
                                  body=_bytes(chunks))
        try:
            info = PartInfo(int(answer["index"]), str(answer["sha256"]),
                            int(answer["size_bytes"]))
        except (KeyError, TypeError, ValueError):
            raise self._unreadable("restore answer") from None
        if info.index != index:
            raise self._unreadable("restore answer (another index)")
        return info

    async def read_part(self, head: Head, index: int, start: int,
                        end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        query = urlencode({"path": head.path, "generation": head.generation,
                           "head": head.sha256})
        resp = await self._send("GET", f"{SLOTS}/{head.slot_id}/parts/{index}?{query}",
                                headers={"Range": f"bytes={start}-{end - 1}"})
        want, got = end - start, 0
        try:
            async for chunk in resp.aiter_raw():
                got += len(chunk)
                if got > want:
                    raise ReplicaUnavailable(f"{self._node_id} sent more than the range")
                yield chunk
        except httpx.HTTPError as exc:
            raise ReplicaUnavailable(f"{self._node_id}: part {index} broke off after {got} "
                                     f"bytes ({type(exc).__name__})") from None
        finally:
            await resp.aclose()
        if got != want:
            raise ReplicaUnavailable(f"{self._node_id}: part {index} ended after {got} of "
                                     f"{want} bytes")

    # -- digests (RFC 0014) -------------------------------------------------------

    async def _digest(self, question: DigestQuestion, decode: Callable[[bytes], T]) -> T:
        """Ask a digest question; the answer as `decode` parses it."""
        resp = await self._send("POST", DIGEST, body=digest_wire.encode_question(question),
                                headers={"Content-Type": "application/msgpack"})
        try:
            return decode(await _read(resp, MAX_DIGEST_ANSWER_BYTES))
        except httpx.HTTPError as exc:
            raise ReplicaUnavailable(f"{self._node_id}: the answer broke off "
                                     f"({type(exc).__name__})") from None
        except DigestWireError as exc:
            raise self._unreadable(f"digest answer ({exc})") from None
        except ValueError:
            raise self._unreadable("digest answer (too large)") from None
        finally:
            await resp.aclose()

    async def digest_tops(self) -> dict[int, bytes]:
        return await self._digest(DigestQuestion("tops"), functools.partial(
            digest_wire.decode_tops, total_slots=digest_wire.MAX_SLOTS))

    async def digest_groups(self, slot: int) -> tuple[bytes, ...]:
        return await self._digest(DigestQuestion("groups", slot), digest_wire.decode_groups)

    async def digest_slotlets(self, slot: int, groups: Sequence[int]) -> dict[int, bytes]:
        return await self._digest(DigestQuestion("slotlets", slot, tuple(groups)),
                                  digest_wire.decode_slotlets)

    async def slotlet_heads(self, slot: int, slotlets: Sequence[int]) -> dict[str, HeadKey]:
        return await self._digest(DigestQuestion("heads", slot, tuple(slotlets)),
                                  digest_wire.decode_heads)

    async def heads_held(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        return await self._digest(DigestQuestion("held", slot, named=tuple(keys.items())),
                                  digest_wire.decode_paths)

    async def purge_tombstones(self, slot: int, keys: Mapping[str, HeadKey]) -> set[str]:
        return await self._digest(DigestQuestion("purge", slot, named=tuple(keys.items())),
                                  digest_wire.decode_paths)

    async def list_heads(self, slot: int | None, prefix: str, after: str | None,
                         limit: int) -> list[Head]:
        query = {"prefix": prefix, "limit": str(limit), **({"after": after} if after else {})}
        base = HEADS if slot is None else f"{SLOTS}/{quote(str(slot))}/heads"
        answer = await self._json("GET", f"{base}?{urlencode(query)}")
        try:
            heads = answer["heads"]
            if not isinstance(heads, list):
                raise TypeError("heads")
            return [h for h in (self._head(raw) for raw in heads) if h is not None]
        except (KeyError, TypeError):
            raise self._unreadable("listing") from None


async def _bytes(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The caller's chunks as httpx streams them (bytes, never a memoryview)."""
    async for chunk in chunks:
        if chunk:
            yield bytes(chunk)


async def _read(resp: httpx.Response, limit: int) -> bytes:
    """The answer's body, or ValueError past `limit` bytes."""
    data = bytearray()
    async for chunk in resp.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise ValueError("answer too large")
    return bytes(data)
