"""Fixtures of the fuzz tests: a real node on loopback, served from its own
thread (schemathesis drives it with blocking HTTP from the test's thread).

`FUZZ_EXAMPLES` sets how many examples each API operation gets (CI keeps the
default small; `nox -s fuzz` raises it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from rimio.config import StorageConfig, single_node_config
from rimio.node import Node

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


class LiveNode:
    """A node running `trio.run` in a daemon thread until `stop`."""

    def __init__(self, data_dir: Path) -> None:
        self._config = single_node_config(
            data_dir, storage=StorageConfig(part_size_bytes=4096, max_object_bytes=1 << 20))
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="live-node", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the node did not start: {self._error!r}")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with Node(self._config) as node:
            self.url = node.url
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = LiveNode(tmp_path_factory.mktemp("fuzz") / "data")
    node.start()
    try:
        yield node
    finally:
        node.stop()
