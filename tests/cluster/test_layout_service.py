"""The layout service on real nodes: founding, joining, spreading, persisting,
and the trust boundary of `POST /internal/v1/layout` (RFC 0011 §2, §6)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio
import trio.testing

from rimio.cluster.layout import LAYOUT_FILE, LayoutService
from rimio.core.frames import Status
from rimio.core.layout import Layout, Role
from rimio.core.layout_frames import decode_layout, encode_layout
from rimio.net.http import signed_headers
from rimio.node import Node
from rimio.testing import LocalCluster


def _layout(node: Node) -> Layout:
    assert node.layout is not None
    return node.layout.current


def _service(node: Node) -> LayoutService:
    assert node.layout is not None
    return node.layout


def _agreed(c: LocalCluster) -> bool:
    digests = {_layout(n).digest for n in c.nodes.values()}
    return len(digests) == 1


async def test_founders_agree_and_persist(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3) as c:
        layouts = [_layout(n) for n in c.nodes.values()]
        assert all(lay == layouts[0] for lay in layouts)
        first = layouts[0]
        assert {n: m.role for n, m in first.members.items()} == {
            "node-1": Role.ACTIVE, "node-2": Role.ACTIVE, "node-3": Role.ACTIVE}
        assert first.moving_slots() == 0
        for node_id in c.nodes:
            on_disk = (tmp_path / node_id / LAYOUT_FILE).read_bytes()
            assert decode_layout(on_disk, max_size=1 << 20) == first


async def test_a_joined_node_places_slots_exactly_like_the_founders(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="http", replicas=2) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        joined = await c.add_node("node-4")
        await c.wait_for(lambda: _agreed(c), within=10)
        lay = _layout(joined)
        assert lay.role("node-4") is Role.JOINING
        assert lay.slots_to_copy("node-4")  # a target at once, holding nothing yet
        founder = _layout(c.nodes["node-1"])
        for slot in range(lay.total_slots):
            assert _service(joined).plan(slot) == _service(c.nodes["node-1"]).plan(slot)
        assert founder.version == lay.version
        assert lay.moving_slots() > 0
        # The public view says the same on every node. node-4's mover runs
        # meanwhile (its first confirm may land between two requests): a
        # view of a newer layout than `lay` is progress, not disagreement.
        # (A generous timeout: four nodes share this one event loop with the
        # move's traffic, and on a loaded box an answer can take seconds.)
        async with httpx.AsyncClient(timeout=60) as client:
            for node in c.nodes.values():
                state = (await client.get(node.url + "/api/v1/cluster")).json()
                assert state["layout_version"] >= lay.version
                if state["layout_version"] == lay.version:
                    assert state["moving_slots"] == lay.moving_slots()
                nodes = (await client.get(node.url + "/api/v1/nodes")).json()["nodes"]
                roles = {n["node_id"]: (n["role"], n["slots"]) for n in nodes}
                assert roles["node-4"][0] == "joining"
                assert roles["node-1"][0] == "active" and roles["node-1"][1] > 0


async def test_updates_spread_and_survive_a_full_restart(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        one = _service(c.nodes["node-1"])
        seen = _service(c.nodes["node-3"]).current
        await one.update(lambda lay: lay.decommission("node-2"))
        with trio.fail_after(5):
            after = await _service(c.nodes["node-3"]).wait_changed(seen)
        assert after.role("node-2") is Role.DRAINING
        await c.wait_for(lambda: _agreed(c), within=5)
        expected = _layout(c.nodes["node-1"])
        for node_id in list(c.nodes):
            c.crash(node_id)
            await c.wait_down(node_id)
        # alone, with nobody to exchange with: the layout comes from its disk
        back = await c.start("node-3")
        assert _layout(back) == expected


async def test_concurrent_joins_through_different_nodes_converge(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=3) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_service(c.nodes["node-1"]).update,
                               lambda lay: lay.join("x", "127.0.0.1:1"))
            nursery.start_soon(_service(c.nodes["node-2"]).update,
                               lambda lay: lay.join("y", "127.0.0.1:2"))
        await c.wait_for(lambda: _agreed(c), within=10)
        lay = _layout(c.nodes["node-3"])
        assert lay.role("x") is Role.JOINING and lay.role("y") is Role.JOINING


async def test_the_layout_route_refuses_bad_input_and_changes_nothing(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 2, transport="memory", replicas=2) as c:
        node = c.nodes["node-1"]
        before = _layout(node)
        key = c.cluster.keyring()
        url = node.url + "/internal/v1/layout"

        def signed(body: bytes, destination: str = "node-1") -> dict[str, str]:
            return signed_headers(key, "POST", "/internal/v1/layout", body,
                                  destination=destination)

        other = Layout.founding({"a": "a:1"}, total_slots=before.total_slots, replicas=1,
                                write_quorum=None)
        hostile = before.join("evil", "10.9.9.9:1")
        async with httpx.AsyncClient() as client:
            garbage = b"\x92\x01"
            assert (await client.post(url, content=garbage,
                                      headers=signed(garbage))).status_code == 400
            frame = encode_layout(other, cluster=c.cluster.name)
            r = await client.post(url, content=frame, headers=signed(frame))
            assert r.status_code == 409 and "another cluster" in r.json()["error"]["message"]
            stranger = encode_layout(before, cluster="elsewhere")
            assert (await client.post(url, content=stranger,
                                      headers=signed(stranger))).status_code == 400
            frame = encode_layout(hostile, cluster=c.cluster.name)
            assert (await client.post(url, content=frame)).status_code == 401
            assert (await client.post(url, content=frame,
                                      headers=signed(frame, "node-2"))).status_code == 401
            assert _layout(node) == before
            # signed for this node, the same frame is merged and answered
            r = await client.post(url, content=frame, headers=signed(frame))
            assert r.status_code == 200
            assert decode_layout(r.content, max_size=1 << 20).role("evil") is Role.JOINING
            # decommission: unknown node 404, a known one drains (and again: no change)
            path = "/internal/v1/layout/decommission"
            for node_id, status in (("nope", 404), ("node-2", 200), ("node-2", 200)):
                body = json.dumps({"node_id": node_id}).encode()
                r = await client.post(node.url + path, content=body, headers=signed_headers(
                    key, "POST", path, body, destination="node-1"))
                assert r.status_code == status, r.text
            assert _layout(node).role("node-2") is Role.DRAINING


class _GatedExchanger:
    """Hands each frame to the other node's service once the test opens the
    gate; counts the exchanges under way at once."""

    def __init__(self, peers: dict[str, LayoutService]) -> None:
        self.peers = peers
        self.gate = trio.Event()
        self.sent: list[bytes] = []
        self.under_way = 0
        self.most_under_way = 0

    async def exchange(self, address: str, node_id: str, frame: bytes) -> bytes:
        self.sent.append(frame)
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            await self.gate.wait()
            return await self.peers[node_id].merge_remote(frame, source="a")
        finally:
            self.under_way -= 1


async def test_a_burst_of_changes_is_pushed_in_two_exchanges(tmp_path: Path) -> None:
    base = Layout.founding({"a": "a:1", "b": "b:1"}, total_slots=16, replicas=2,
                           write_quorum=None)
    b = LayoutService("b", base, cluster="c", state_file=tmp_path / "b.msgpack")
    exchanger = _GatedExchanger({"b": b})
    a = LayoutService("a", base, cluster="c", state_file=tmp_path / "a.msgpack",
                      exchanger=exchanger, reachable=lambda node: node == "b",
                      interval=3600.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)  # pushes once: that exchange waits at the gate
        await trio.testing.wait_all_tasks_blocked()
        for i in range(10):
            await a.update(lambda lay, i=i: lay.join(f"n{i}", f"n{i}:1"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(exchanger.sent) == 1
        exchanger.gate.set()
        with trio.fail_after(5):
            while b.current != a.current:
                await b.wait_changed(b.current)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # the first push, then one carrying the layout after all ten changes
    assert len(exchanger.sent) == 2 and exchanger.most_under_way == 1
    assert decode_layout(exchanger.sent[1], max_size=1 << 20) == a.current
    assert len(a.current.members) == 12
