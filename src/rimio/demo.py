"""`rimio demo`: a keyed cluster of three nodes on loopback, R = 3 and W = 2,
in one process, that shows on start that data survives a node going away.

Once the nodes serve, the demo writes an object through node-1, stops the
last node, reads the object back and writes a second one through the others
(a quorum of two is still there), starts the stopped node again on the same
disk and reads the second object through it. Each step prints one line; then
the cluster keeps running for the user until Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from rimio import __version__
from rimio.config import Address, ClusterConfig, NodeConfig, NodeSpec, ReplicationConfig
from rimio.errors import ConfigError
from rimio.node import Node, check_port_free

log = logging.getLogger("rimio.demo")

DEMO_BANNER = """\
Rimio demo cluster is up: {urls}  (data in {data})
Every object is kept on {replicas} nodes; a write is acknowledged once {quorum} hold it.
Any node serves any path.

Try it:
  curl -X PUT --data-binary 'hello edge' {url}/api/v1/blobs/hello.txt
  curl {url}/api/v1/blobs/hello.txt
  curl '{url}/api/v1/blobs?prefix=hel'
  curl {url}/api/v1/nodes
  curl {url}/api/v1/cluster

Stop with Ctrl-C."""


def demo_configs(data: Path, port: int, count: int) -> list[NodeConfig]:
    """A cluster of `count` nodes on loopback ports port.., each object on
    min(3, count) of them with a majority write quorum, keyed by
    `data/cluster.key` (made on first use)."""
    if not 1 <= count <= 9:
        raise ConfigError("--nodes must be between 1 and 9")
    if not 1 <= port <= 65535 - count + 1:
        raise ConfigError(f"--port {port} is out of range")
    specs = tuple(
        NodeSpec(f"node-{i + 1}", Address("127.0.0.1", port + i),
                 Address("127.0.0.1", port + i), (data / f"node-{i + 1}",))
        for i in range(count)
    )
    replicas = min(3, count)
    cluster = ClusterConfig(name="rimio-demo", nodes=specs,
                            replication=ReplicationConfig(replicas=replicas,
                                                          min_write_replicas=replicas // 2 + 1),
                            key_file=data / "cluster.key")
    return [NodeConfig(cluster=cluster, spec=s) for s in specs]


class _Running:
    """One node of the demo, run in its own task so it can be stopped and started."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node: Node | None = None
        self.done = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.done = trio.Event()
        try:
            async with Node(self.config) as node:
                self.node = node
                print(f"rimio {__version__}: node {node.node_id} serving on {node.url}",
                      file=sys.stderr, flush=True)
                task_status.started(node)
                await node.wait_stopped()
        finally:
            self.node = None
            self.done.set()

    async def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        await self.done.wait()


def _say(line: str) -> None:
    print(f"demo: {line}", flush=True)


async def _wait_all_alive(client: httpx.AsyncClient, urls: list[str]) -> None:
    with trio.fail_after(30):
        while True:
            views = []
            for url in urls:
                try:
                    views.append((await client.get(f"{url}/api/v1/nodes")).json()["nodes"])
                except (httpx.HTTPError, ValueError, KeyError):
                    views.append([])
            if all(sum(1 for n in v if n.get("status") == "alive") == len(urls) for v in views):
                return
            await trio.sleep(0.2)


async def _expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{what}: {response.status_code} {response.text[:200]}")
    return response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else response.content


async def show_survival(nodes: list[_Running], nursery: trio.Nursery) -> None:
    """Write, stop a node, read and write without it, bring it back, read through it."""
    if len(nodes) < 3:
        _say(f"{len(nodes)} node(s): one copy of each object, nothing to show about losing one")
        return
    urls = [n.node.url for n in nodes if n.node is not None]
    first, second, last = nodes[0], nodes[1], nodes[-1]
    async with httpx.AsyncClient(timeout=30) as client:
        await _wait_all_alive(client, urls)
        body = b"hello from the rimio demo"
        result = await _expect(await client.put(f"{urls[0]}/api/v1/blobs/demo/hello.txt",
                                                content=body), 201, "demo write")
        _say(f"wrote demo/hello.txt through {first.config.node_id}: "
             f"{result['committed_replicas']} replicas hold it")
        stopped = last.config.node_id
        await last.stop()
        _say(f"stopped {stopped}")
        got = await _expect(await client.get(f"{urls[1]}/api/v1/blobs/demo/hello.txt"), 200,
                            "demo read")
        _say(f"read demo/hello.txt through {second.config.node_id} with {stopped} gone: "
             f"{got.decode()!r}" + (" (same bytes)" if got == body else " (DIFFERENT BYTES)"))
        while_away = b"written while a node was away"
        result = await _expect(await client.put(f"{urls[0]}/api/v1/blobs/demo/while-away.txt",
                                                content=while_away), 201, "demo write")
        _say(f"wrote demo/while-away.txt with {stopped} gone: acknowledged by "
             f"{result['committed_replicas']} replicas")
        await nursery.start(last.run)
        await _wait_all_alive(client, urls)
        got = await _expect(await client.get(f"{urls[-1]}/api/v1/blobs/demo/while-away.txt"),
                            200, "demo read")
        _say(f"{stopped} is back; read demo/while-away.txt through it: {got.decode()!r}"
             + (" (same bytes)" if got == while_away else " (DIFFERENT BYTES)"))
        _say("data survived a node going away")


async def run_demo(configs: list[NodeConfig], data: Path) -> None:
    """Run the demo cluster until SIGTERM or SIGINT."""
    for config in configs:
        config.cluster.check_keyed()
        check_port_free(config.spec.bind_addr)
    running = [_Running(c) for c in configs]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            for node in running:
                await nursery.start(node.run)
            urls = [n.node.url for n in running if n.node is not None]
            cluster = configs[0].cluster
            print(DEMO_BANNER.format(url=urls[0], urls=", ".join(urls), data=data,
                                     replicas=cluster.effective_replicas,
                                     quorum=cluster.write_quorum), flush=True)
            try:
                await show_survival(running, nursery)
            except (RuntimeError, httpx.HTTPError, trio.TooSlowError) as exc:
                _say(f"the survival check did not finish: {exc}")
            async for signum in signals:
                log.info("%s: stopping", signal.Signals(signum).name)
                break
            with trio.CancelScope(shield=True):
                for node in running:
                    await node.stop()
            nursery.cancel_scope.cancel()
