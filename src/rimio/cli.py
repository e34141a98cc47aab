"""`rimio`: the command line (`start`, `join`, `demo`, `keygen`, `token new`,
`admin decommission`, `admin init-disk`).

Every failure a user can cause ends in one line on stderr and a non-zero
exit status, never a traceback. A running node rereads its cluster key file
on SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from rimio import __version__
from rimio.api.access import token_digest
from rimio.cluster.bootstrap import config_from_bootstrap, fetch_bootstrap, parse_cluster_url
from rimio.cluster.decommission import decommission
from rimio.config import (
    NODE_ID,
    Address,
    NodeConfig,
    Scope,
    ensure_key_file,
    load_config,
    load_keyring,
    write_key_file,
)
from rimio.demo import demo_configs, run_demo
from rimio.errors import ConfigError
from rimio.node import Node, check_port_free
from rimio.storage.disk_identity import init_disks

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
    await run_nodes([config], banner, seeds)


async def run_nodes(configs: list[NodeConfig], banner: str | None = None,
                    seeds: list[str] | None = None) -> None:
    """Run nodes in this process until SIGTERM or SIGINT, then stop them gracefully."""
    log = logging.getLogger("rimio")
    for config in configs:  # every port before any disk is touched
        config.cluster.check_keyed()
        check_port_free(config.spec.bind_addr)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as guard:
            async with contextlib.AsyncExitStack() as stack:
                nodes = [await stack.enter_async_context(Node(c, seeds=seeds or ()))
                         for c in configs]
                for node in nodes:
                    print(f"rimio {__version__}: node {node.node_id} serving on {node.url}",
                          file=sys.stderr, flush=True)
                if banner:
                    print(banner.format(url=nodes[0].url,
                                        urls=", ".join(n.url for n in nodes)), flush=True)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        for node in nodes:
                            node.reload_keys()
                        continue
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
    if args.key_file is None and not args.insecure:
        raise ConfigError("--key-file: joining needs the cluster's key file "
                          "(or --insecure for a cluster that has none)")
    key_file = args.key_file.resolve() if args.key_file else None
    keyring = load_keyring(key_file) if key_file else None
    info = await fetch_bootstrap(seeds, keyring)
    config = config_from_bootstrap(info, args.node, listen, advertise, args.disk.resolve(),
                                   key_file)
    await run_node(config, seeds=info.seeds)


def new_token(name: str, scope: str) -> tuple[str, str]:
    """A fresh client token and the `access.tokens` entry (YAML) that accepts it."""
    if not NODE_ID.match(name):
        raise ConfigError("--name: use letters, digits, '.', '_' or '-' (max 63)")
    token = "rimio_" + secrets.token_urlsafe(32)
    digest = token_digest(token).hex()
    entry = f"- name: {name}\n  sha256: {digest}\n  scope: {Scope(scope).value}\n"
    return token, entry


TOKEN_HELP = """\
token: {token}
# Give the token to the client (header `Authorization: Bearer <token>`); it is
# shown only this once, Rimio keeps only its SHA-256. Add this entry under
# access.tokens in the cluster file of every node, then restart them:
{entry}"""


async def _absorb_signals(signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        logging.getLogger("rimio").info("%s: already stopping", signal.Signals(signum).name)


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
    join.add_argument("--key-file", type=Path, help="the cluster key file")
    join.add_argument("--insecure", action="store_true",
                      help="join a cluster that has no key file")

    demo = sub.add_parser("demo", help="run a local cluster on loopback, data in ./rimio-data")
    demo.add_argument("--data", type=Path, default=Path("rimio-data"))
    demo.add_argument("--port", type=int, default=19080, help="first node's port")
    demo.add_argument("--nodes", type=int, default=3, help="how many nodes (1-9)")

    keygen = sub.add_parser("keygen", help="write a new cluster key file (mode 0600)")
    keygen.add_argument("path", type=Path, help="the key file to create (never overwritten)")

    token = sub.add_parser("token", help="client tokens for the access section")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    token_new = token_sub.add_parser("new", help="print a fresh token and its config entry")
    token_new.add_argument("--name", required=True, help="the token's name, shown in logs")
    token_new.add_argument("--scope", required=True, choices=[s.value for s in Scope],
                           help="read, or write (which implies read)")

    admin = sub.add_parser("admin", help="operate a running cluster")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    drain = admin_sub.add_parser("decommission",
                                 help="drain a node; exits 0 once it holds no slot")
    drain.add_argument("node", help="the node id to decommission")
    drain.add_argument("--via", required=True, help="URL of any running node, http://host:port")
    drain.add_argument("--key-file", type=Path, help="the cluster key file")
    drain.add_argument("--token", help="a client token, when the API has an access section "
                       "(default: $RIMIO_TOKEN)")
    drain.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    drain.add_argument("--timeout", type=float, default=0.0,
                       help="give up after this many seconds (default: wait)")
    init_disk = admin_sub.add_parser(
        "init-disk", help="bring a new or replaced blank disk into a stopped node")
    init_disk.add_argument("--conf", required=True, type=Path, help="cluster config (YAML)")
    init_disk.add_argument("--node", required=True, help="the node the disk belongs to")
    init_disk.add_argument("disks", nargs="+", type=Path, metavar="DISK",
                           help="the blank disk(s), as listed in the node's config")
    return parser.parse_args(argv)


async def _decommission(args: argparse.Namespace) -> None:
    keyring = load_keyring(args.key_file.resolve()) if args.key_file else None
    token = args.token or os.environ.get("RIMIO_TOKEN") or None

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    await decommission(args.node, args.via, keyring, token=token, interval=args.interval,
                       give_up_after=args.timeout or None, report=report)


def init_disk(config: NodeConfig, paths: list[Path]) -> list[Path]:
    """Give the blank disks `paths` (as the node's config lists them) the node's
    identity (RFC 0012); returns the configured disks initialised."""
    configured = {disk.resolve(): disk for disk in config.spec.disks}
    chosen = []
    for path in paths:
        disk = configured.get(path.resolve())
        if disk is None:
            raise ConfigError(f"{path} is not a disk of node {config.node_id} in the "
                              "configuration")
        chosen.append(disk)
    init_disks(config.spec.disks, cluster=config.cluster.name, node_id=config.node_id,
               replacing=chosen, now=time.time())
    return chosen


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
            data = args.data.resolve()
            configs = demo_configs(data, args.port, args.nodes)
            for config in configs:  # before the key file is made
                check_port_free(config.spec.bind_addr)
            assert configs[0].cluster.key_file is not None
            ensure_key_file(configs[0].cluster.key_file)
            trio.run(run_demo, configs, data)
        elif args.command == "keygen":
            write_key_file(args.path)
            print(f"wrote a new cluster key to {args.path}; copy it to every node and set "
                  "cluster.key_file", file=sys.stderr)
        elif args.command == "admin" and args.admin_command == "init-disk":
            config = load_config(args.conf).node(args.node)
            for disk in init_disk(config, args.disks):
                print(f"initialised disk {disk} of node {config.node_id}; start the node and "
                      "its data comes back from the other replicas", file=sys.stderr)
        elif args.command == "admin":
            trio.run(_decommission, args)
        elif args.command == "token":
            token, entry = new_token(args.name, args.scope)
            print(TOKEN_HELP.format(token=token, entry=entry), end="")
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
