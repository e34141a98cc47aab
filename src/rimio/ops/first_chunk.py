"""Reading a stream's first chunk before an answer starts, then serving it
whole: an error in the first chunk (a missing part, a small part that fails
its sha256 check) becomes an error status instead of a broken `200`.

Used by the public GET path (`rimio.api.asgi_blobs`) and by a replica's part
read (`ReplicaService.open_part`, served by `rimio.api.internal_replica`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator


async def peel(chunks: AsyncIterator[bytes]) -> bytes:
    """The first chunk of `chunks` (b"" when there is none). Whatever reading
    it raises surfaces here, with `chunks` closed."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return b""
    except BaseException:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
        raise


async def rejoin(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`first` (unless empty), then the rest of the stream `peel` read it from;
    the stream is closed when this one is."""
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        if isinstance(rest, AsyncGenerator):
            await rest.aclose()
