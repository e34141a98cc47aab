"""Streaming a large body's parts to every replica of a write set at once.

The body is read once. It is cut into parts of `part_size`; each chunk is
hashed (its part's SHA-256 and the whole object's) and handed to one bounded
channel per replica, whose task feeds it to `Replica.put_part`, one call per
part. Memory stays bounded: at most `upload_buffer_chunks` chunks wait per
replica. A replica that fails, answers a part hash other than the
coordinator's own, or falls behind by a full buffer for longer than
`upload_lag_grace` is dropped from the write, so it does not stall the
others. A laggard the write cannot be acknowledged without is waited for up
to `upload_stall_timeout` instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import trio

from rimio.core.errors import QuorumLost
from rimio.core.quorum import SlotPlan
from rimio.core.replica import PartInfo, Replica
from rimio.ops.coordination import Coordination, log


@dataclass(frozen=True, slots=True)
class _PartStart:
    index: int


@dataclass(frozen=True, slots=True)
class _PartEnd:
    index: int


_Message = bytes | _PartStart | _PartEnd


# Chunks at least this large are hashed in a worker thread.
_THREAD_HASH_BYTES = 256 * 1024


def _update(hashes: tuple[Any, ...], chunk: bytes) -> None:
    for h in hashes:
        h.update(chunk)


class PartMismatch(Exception):
    """A replica stored a part other than the one the coordinator sent."""


@dataclass(frozen=True, slots=True)
class Uploaded:
    """The outcome of streaming a body: the coordinator's own view of the
    parts, the whole object's etag and size, and which replicas hold every part."""

    parts: tuple[PartInfo, ...]
    etag: str
    size: int
    holders: tuple[str, ...]
    dropped: tuple[str, ...]


class _PartChunks:
    """The chunks of one part, as `put_part` consumes them from the replica's channel."""

    def __init__(self, receive: trio.MemoryReceiveChannel[_Message]) -> None:
        self._receive = receive
        self.ended = False

    def __aiter__(self) -> _PartChunks:
        return self

    async def __anext__(self) -> bytes:
        if self.ended:
            raise StopAsyncIteration
        message = await self._receive.receive()
        if isinstance(message, _PartEnd):
            self.ended = True
            raise StopAsyncIteration
        if not isinstance(message, bytes):
            raise PartMismatch("a part began before the previous one ended")
        return message


@dataclass(eq=False)
class _ReplicaStream:
    """One replica's side of the upload: its channel, its task, what it holds."""

    node: str
    replica: Replica
    send: trio.MemorySendChannel[_Message]
    receive: trio.MemoryReceiveChannel[_Message]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stored: dict[int, PartInfo] = field(default_factory=dict)
    dropped: bool = False
    done: trio.Event = field(default_factory=trio.Event)

    def drop(self, why: str) -> None:
        if not self.dropped:
            log.info("replica %s dropped from a write: %s", self.node, why)
        self.dropped = True
        self.scope.cancel()
        self.receive.close()


class PartUpload:
    """One streamed write of `generation` of `path` to `nodes`."""

    def __init__(self, ctx: Coordination, plan: SlotPlan, nodes: list[str], path: str,
                 generation: int) -> None:
        self._ctx = ctx
        self._plan = plan
        self._path = path
        self._generation = generation
        self._expected: dict[int, PartInfo] = {}
        self._streams: list[_ReplicaStream] = []
        for node in nodes:
            send, receive = trio.open_memory_channel[_Message](
                ctx.settings.upload_buffer_chunks)
            self._streams.append(_ReplicaStream(node, ctx.replica_for(node), send, receive))

    async def run(self, body: Any) -> Uploaded:
        """Stream `body` (an async iterator of bytes) to every replica.
        An error of the body itself (the client's) is raised as it is;
        QuorumLost as soon as too few replicas are left to acknowledge."""
        failure: BaseException | None = None
        result: Uploaded | None = None
        async with trio.open_nursery() as nursery:
            for stream in self._streams:
                nursery.start_soon(self._feed_replica, stream)
            try:
                result = await self._produce(body)
            except Exception as exc:  # the body failed: nothing more will be sent
                failure = exc
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert result is not None
        return result

    def _live(self) -> list[_ReplicaStream]:
        return [s for s in self._streams if not s.dropped]

    async def _produce(self, body: Any) -> Uploaded:
        part_size = self._ctx.settings.part_size
        whole = hashlib.sha256()
        size = 0
        index = 0
        part_hash: Any = None
        part_fill = 0
        async for batch in body:
            pos = 0
            while pos < len(batch):
                if part_hash is None:
                    part_hash, part_fill = hashlib.sha256(), 0
                    await self._broadcast(_PartStart(index))
                take = min(part_size - part_fill, len(batch) - pos)
                chunk = batch if pos == 0 and take == len(batch) else batch[pos:pos + take]
                if take >= _THREAD_HASH_BYTES:
                    # Off the event loop (hashlib lets go of the GIL): the
                    # replicas' tasks keep sending meanwhile.
                    await trio.to_thread.run_sync(_update, (part_hash, whole), chunk)
                else:
                    _update((part_hash, whole), chunk)
                size += take
                part_fill += take
                pos += take
                await self._broadcast(bytes(chunk))
                if part_fill == part_size:
                    await self._end_part(index, part_hash.hexdigest(), part_fill)
                    index, part_hash = index + 1, None
        if part_hash is not None:
            await self._end_part(index, part_hash.hexdigest(), part_fill)
        for stream in self._streams:
            stream.send.close()
        await self._wait_for_replicas()
        holders = tuple(s.node for s in self._streams
                        if not s.dropped and len(s.stored) == len(self._expected))
        dropped = tuple(s.node for s in self._streams if s.node not in holders)
        parts = tuple(self._expected[i] for i in range(len(self._expected)))
        return Uploaded(parts, whole.hexdigest(), size, holders, dropped)

    async def _end_part(self, index: int, sha256: str, size: int) -> None:
        # Known before the end marker goes out, so a replica's answer for
        # this part always finds it.
        self._expected[index] = PartInfo(index, sha256, size)
        await self._broadcast(_PartEnd(index))

    async def _broadcast(self, message: _Message) -> None:
        lagging: list[_ReplicaStream] = []
        for stream in self._live():
            try:
                stream.send.send_nowait(message)
            except trio.WouldBlock:
                lagging.append(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                stream.drop("its upload ended")
        if lagging:
            await self._wait_for_laggards(lagging, message)
        live = [s.node for s in self._live()]
        if not self._plan.write_possible(live):
            # Doomed: stop reading the body now rather than at its end.
            raise QuorumLost(f"slot {self._plan.slot}: only {', '.join(live) or 'no replica'} "
                             "still take the parts; the write cannot be acknowledged")

    async def _wait_for_laggards(self, lagging: list[_ReplicaStream],
                                 message: _Message) -> None:
        settings = self._ctx.settings
        waiting = list(lagging)
        with trio.move_on_after(settings.upload_lag_grace):
            await self._send_each(waiting, message)
        if not waiting:
            return
        keeping = [s.node for s in self._live() if s not in waiting]
        if not self._plan.write_possible(keeping):
            # The write needs a laggard: wait longer for it rather than fail.
            with trio.move_on_after(settings.upload_stall_timeout):
                await self._send_each(waiting, message)
        for stream in waiting:
            stream.drop("it fell behind by a full buffer")

    @staticmethod
    async def _send_each(waiting: list[_ReplicaStream], message: _Message) -> None:
        """Send to each in turn, removing each from `waiting` once it took the message."""
        while waiting:
            stream = waiting[0]
            try:
                await stream.send.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                stream.drop("its upload ended")
            waiting.pop(0)

    async def _wait_for_replicas(self) -> None:
        with trio.move_on_after(self._ctx.settings.upload_stall_timeout):
            for stream in self._streams:
                await stream.done.wait()
        for stream in self._streams:
            if not stream.done.is_set():
                stream.drop("it did not finish its last part in time")

    async def _feed_replica(self, stream: _ReplicaStream) -> None:
        """One replica's task: a `put_part` per part, each answer checked."""
        slot = self._plan.slot
        try:
            with stream.scope:
                while True:
                    try:
                        message = await stream.receive.receive()
                    except trio.EndOfChannel:
                        break
                    if not isinstance(message, _PartStart):
                        raise PartMismatch("part data arrived outside a part")
                    chunks = _PartChunks(stream.receive)
                    info = await stream.replica.put_part(slot, self._path, self._generation,
                                                         message.index, chunks)
                    expected = self._expected.get(message.index)
                    if not chunks.ended or info != expected:
                        raise PartMismatch(f"part {message.index} stored as {info}, "
                                           f"sent as {expected}")
                    stream.stored[message.index] = info
        except Exception as exc:  # a failed replica leaves the write; the others go on
            stream.drop(f"{type(exc).__name__}: {exc}")
        finally:
            stream.done.set()
