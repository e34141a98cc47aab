from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rimio.config import StorageConfig, single_node_config
from rimio.node import Node

PART = 4096
MAX_OBJECT = 256 * 1024


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = single_node_config(
        tmp_path / "data",
        storage=StorageConfig(part_size_bytes=PART, max_object_bytes=MAX_OBJECT),
    )
    async with Node(config) as n:
        yield n


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as c:
        yield c
