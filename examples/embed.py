"""Embed a Rimio node in a trio program: start it, store an object, read it back.

Run: python examples/embed.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import trio

from rimio import Node
from rimio.config import single_node_config


async def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        # Port 0: the OS picks a free port; `node.url` tells which one.
        config = single_node_config(Path(data))
        async with Node(config) as node, httpx.AsyncClient(base_url=node.url) as client:
            put = await client.put("/api/v1/blobs/greetings/hello.txt", content=b"hello edge")
            print("PUT ->", put.status_code, put.json())
            got = await client.get("/api/v1/blobs/greetings/hello.txt")
            print("GET ->", got.status_code, got.content.decode())
        # Leaving the block stopped the server and closed the store.


if __name__ == "__main__":
    trio.run(main)
