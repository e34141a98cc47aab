"""The `Transport` contract, checked against every implementation.

Each implementation sends from the address it was built with to a receiving
end that records what arrives: `HttpTransport` talks to a real node on
loopback (whose membership service is replaced by the recorder, with and
without a cluster key), `MemoryTransport` hands frames to the recorder
directly, and `FaultyTransport` wraps either of them with a fault plan that
does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import trio

from rimio.config import NodeConfig, single_node_config
from rimio.net.http import HttpTransport
from rimio.net.transport import Transport, TransportError
from rimio.node import Node
from rimio.testing import FaultPlan, FaultyTransport, MemoryTransport, free_port

SENDER = "10.0.0.9:7000"  # the address the transport under test sends from
MEMORY_TARGET = "10.0.0.1:7000"
NOWHERE_IN_MEMORY = "10.0.0.2:7000"
KEY = "ab" * 32


@dataclass
class Recorder:
    """A receiving end: records packets and streams, answers streams with
    `re:` + the request (nothing at all for `silent`)."""

    packets: list[tuple[str, bytes, float]] = field(default_factory=list)
    streams: list[tuple[str, bytes, float]] = field(default_factory=list)

    def deliver_packet(self, from_addr: str, data: bytes, received_at: float) -> None:
        self.packets.append((from_addr, data, received_at))

    def answer_stream(self, from_addr: str, data: bytes, received_at: float) -> bytes | None:
        self.streams.append((from_addr, data, received_at))
        return None if data == b"silent" else b"re:" + data


@dataclass
class Setup:
    transport: Transport
    target: str  # where the recorder listens
    nowhere: str  # where nobody listens
    recorder: Recorder
    node: str = "node-1"  # the node id at `target` (requests are signed for it)


@contextlib.asynccontextmanager
async def http_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, keyed: bool,
                     wrap: Callable[[Transport], Transport]) -> AsyncIterator[Setup]:
    config = single_node_config(tmp_path / "data")
    keyring = None
    if keyed:
        key_file = tmp_path / "cluster.key"
        key_file.write_text(KEY + "\n")
        config = NodeConfig(cluster=replace(config.cluster, key_file=key_file),
                            spec=config.spec)
        keyring = config.cluster.keyring()
    recorder = Recorder()
    async with Node(config) as node:
        assert node.membership is not None
        monkeypatch.setattr(node.membership, "deliver_packet", recorder.deliver_packet)
        monkeypatch.setattr(node.membership, "answer_stream", recorder.answer_stream)
        transport = wrap(HttpTransport(SENDER, keyring=keyring, packet_timeout=5.0))
        try:
            yield Setup(transport, str(node.address), f"127.0.0.1:{free_port()}", recorder,
                        node.node_id)
        finally:
            await transport.aclose()


@contextlib.asynccontextmanager
async def memory_setup(wrap: Callable[[Transport], Transport]) -> AsyncIterator[Setup]:
    recorder = Recorder()
    receivers = {MEMORY_TARGET: recorder}
    transport = wrap(MemoryTransport(SENDER, receivers.get))
    try:
        yield Setup(transport, MEMORY_TARGET, NOWHERE_IN_MEMORY, recorder)
    finally:
        await transport.aclose()


def _bare(t: Transport) -> Transport:
    return t


def _faulty(t: Transport) -> Transport:
    return FaultyTransport(t, FaultPlan(seed=1))


KINDS = ["http", "http-keyed", "memory", "faulty-memory", "faulty-http"]


@pytest.fixture(params=KINDS)
async def setup(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    kind: str = request.param
    wrap = _faulty if kind.startswith("faulty") else _bare
    cm = (memory_setup(wrap) if kind.endswith("memory")
          else http_setup(tmp_path, monkeypatch, keyed=kind == "http-keyed", wrap=wrap))
    async with cm as s:
        yield s


async def test_sends_from_the_address_it_was_built_with(setup: Setup) -> None:
    assert setup.transport.address == SENDER


async def test_packet_arrives_whole_with_the_senders_address(setup: Setup) -> None:
    data = bytes(range(256)) * 64  # every byte value, 16 KiB
    before = trio.current_time()
    with trio.fail_after(5):
        await setup.transport.send_packet(setup.target, data, node=setup.node)
        await setup.transport.send_packet(setup.target, b"second", node=setup.node)
    ((src, got, at), (src2, got2, _)) = setup.recorder.packets
    assert (src, got) == (SENDER, data) and (src2, got2) == (SENDER, b"second")
    assert before <= at <= trio.current_time()  # stamped on receipt, in trio time


async def test_stream_round_trip(setup: Setup) -> None:
    with trio.fail_after(5):
        reply = await setup.transport.request_stream(setup.target, b"\x00push-pull\xff", node=setup.node)
    assert reply == b"re:\x00push-pull\xff"
    assert [(s, d) for s, d, _ in setup.recorder.streams] == [(SENDER, b"\x00push-pull\xff")]


async def test_stream_without_an_answer_is_an_empty_reply(setup: Setup) -> None:
    with trio.fail_after(5):
        assert await setup.transport.request_stream(setup.target, b"silent", node=setup.node) == b""


async def test_concurrent_streams_each_get_their_own_reply(setup: Setup) -> None:
    replies: dict[int, bytes] = {}

    async def one(i: int) -> None:
        replies[i] = await setup.transport.request_stream(setup.target, b"n%d" % i, node=setup.node)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
    assert replies == {i: b"re:n%d" % i for i in range(8)}


async def test_stream_to_an_unreachable_address_raises_transport_error(setup: Setup) -> None:
    with trio.fail_after(5), pytest.raises(TransportError):
        await setup.transport.request_stream(setup.nowhere, b"hello")
    assert setup.recorder.streams == []


async def test_packet_to_an_unreachable_address_fails_only_with_transport_error(
        setup: Setup) -> None:
    # Best effort: a lost packet may go unnoticed, but nothing else may escape.
    with trio.fail_after(5), contextlib.suppress(TransportError):
        await setup.transport.send_packet(setup.nowhere, b"hello")
    assert setup.recorder.packets == []


async def test_aclose_is_idempotent_and_final(setup: Setup) -> None:
    await setup.transport.aclose()
    await setup.transport.aclose()
    with pytest.raises(TransportError):
        await setup.transport.send_packet(setup.target, b"late", node=setup.node)
    with pytest.raises(TransportError):
        await setup.transport.request_stream(setup.target, b"late", node=setup.node)
    assert setup.recorder.packets == [] and setup.recorder.streams == []


async def test_faulty_transport_blocked_link_is_silence_for_packets_error_for_streams(
) -> None:
    recorder = Recorder()
    plan = FaultPlan(seed=1)
    transport = FaultyTransport(MemoryTransport(SENDER, {MEMORY_TARGET: recorder}.get), plan)
    plan.partition([SENDER], [MEMORY_TARGET], one_way=True)
    await transport.send_packet(MEMORY_TARGET, b"lost")
    with pytest.raises(TransportError):
        await transport.request_stream(MEMORY_TARGET, b"lost")
    plan.heal()
    assert await transport.request_stream(MEMORY_TARGET, b"back") == b"re:back"
    assert [d for _, d, _ in recorder.packets] == [] and plan.dropped == 2
