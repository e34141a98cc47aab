"""`rimio`: the command line (`start`, `demo`).

Every failure a user can cause ends in one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from rimio import __version__
from rimio.cluster.bootstrap import config_from_bootstrap, fetch_bootstrap, parse_cluster_url
from rimio.config import (
    NODE_ID,
    Address,
    NodeConfig,
    load_config,
    load_keyring,
    single_node_config,
)
from rimio.errors import ConfigError
from rimio.node import Node

EXIT_CONFIG = 2


def _raise_fd_limit() -> None:
    # A node keeps one SQLite file (plus WAL and shm) open per slot it holds.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 65536
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def run_node(config: NodeConfig, banner: str | None = None,
                   seeds: list[str] | None = None) -> None:
    """Run one node until SIGTERM or SIGINT, then stop gracefully."""
    log = logging.getLogger("rimio")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as guard:
            async with Node(config, seeds=seeds or ()) as node:
                print(f"rimio {__version__}: node {node.node_id} serving on {node.url}",
                      file=sys.stderr, flush=True)
                if banner:
                    print(banner.format(url=node.url), flush=True)
                async for signum in signals:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    break
                # Signals that arrive while we drain must not kill us: the
                # receiver would re-raise them when it closes.
                guard.start_soon(_absorb_signals, signals)
            guard.cancel_scope.cancel()


async def _join(args: argparse.Namespace) -> None:
    seeds = parse_cluster_url(args.cluster_url)
    listen = Address.parse(args.listen, "--listen")
    advertise = Address.parse(args.advertise or args.listen, "--advertise")
    if not NODE_ID.match(args.node):
        raise ConfigError("--node: use letters, digits, '.', '_' or '-' (max 63)")
    key_file = args.key_file.resolve() if args.key_file else None
    keyring = load_keyring(key_file) if key_file else None
    info = await fetch_bootstrap(seeds, keyring)
    config = config_from_bootstrap(info, args.node, listen, advertise, args.disk.resolve(),
                                   key_file)
    await run_node(config, seeds=info.seeds)


async def _absorb_signals(signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        logging.getLogger("rimio").info("%s: already stopping", signal.Signals(signum).name)


DEMO_BANNER = """\
Rimio demo node is up at {url}  (data in {data})

Try it:
  curl -X PUT --data-binary 'hello edge' {url}/api/v1/blobs/hello.txt
  curl {url}/api/v1/blobs/hello.txt
  curl '{url}/api/v1/blobs?prefix=hel'

Stop with Ctrl-C."""


def _single_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rimio", description="Rimio edge object store")
    parser.add_argument("--version", action="version", version=f"rimio {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", help="found or restart into the cluster of a config file")
    start.add_argument("--conf", required=True, type=Path, help="cluster config (YAML)")
    start.add_argument("--node", required=True, help="this node's id in the config")

    join = sub.add_parser("join", help="join a running cluster through any of its nodes")
    join.add_argument("cluster_url", help="cluster://host:port[,host:port...]")
    join.add_argument("--node", required=True, help="the new node's id")
    join.add_argument("--listen", required=True, help="host:port to bind (the one port)")
    join.add_argument("--advertise", help="host:port the others reach us at (default: --listen)")
    join.add_argument("--disk", required=True, type=Path, help="data directory")
    join.add_argument("--key-file", type=Path, help="the cluster key file, if it uses one")

    demo = sub.add_parser("demo", help="run a local node on loopback with data in ./rimio-data")
    demo.add_argument("--data", type=Path, default=Path("rimio-data"))
    demo.add_argument("--port", type=int, default=19080)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("rimio.http").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    _raise_fd_limit()
    try:
        if args.command == "start":
            config = load_config(args.conf).node(args.node)
            trio.run(run_node, config)
        elif args.command == "join":
            trio.run(_join, args)
        elif args.command == "demo":
            if not 0 <= args.port <= 65535:
                raise ConfigError(f"--port {args.port} is out of range")
            data = args.data.resolve()
            config = single_node_config(data, bind=Address("127.0.0.1", args.port),
                                        cluster_name="rimio-demo")
            trio.run(run_node, config, DEMO_BANNER.replace("{data}", str(data)))
    except ConfigError as exc:
        print(f"rimio: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BaseExceptionGroup as group:
        # trio nurseries wrap errors; a configuration problem is still one line
        leaf = _single_leaf(group)
        if isinstance(leaf, ConfigError):
            print(f"rimio: error: {leaf}", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(leaf, KeyboardInterrupt):
            return 0
        raise
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
