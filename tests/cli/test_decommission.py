"""`rimio admin decommission`: drains a node and exits once it holds nothing.

The data movement is the mover's job; here the holdings are confirmed and
dropped through each node's `LayoutService.update`, as the mover will."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from rimio.cli import main
from rimio.cluster.decommission import decommission
from rimio.cluster.layout import LayoutService
from rimio.core.frames import Status
from rimio.core.layout import Role
from rimio.errors import ConfigError
from rimio.node import Node
from rimio.testing import LocalCluster


def _service(node: Node) -> LayoutService:
    assert node.layout is not None
    return node.layout


async def _move_by_hand(c: LocalCluster, leaving: str) -> None:
    """What the movers do: targets confirm their new slots, then the leaving node
    drops its own and makes itself removed."""
    await c.wait_for(lambda: all(_service(n).current.role(leaving) is Role.DRAINING
                                 for n in c.nodes.values()), within=10)
    for node_id, node in c.nodes.items():
        if node_id == leaving:
            continue
        todo = _service(node).current.slots_to_copy(node_id)
        if todo:
            await _service(node).update(lambda lay, n=node_id, t=todo: lay.confirm(n, *t))
    gone = _service(c.nodes[leaving])
    with trio.fail_after(10):
        while gone.current.slots_to_drop(leaving) != gone.current.held_by(leaving):
            await gone.wait_changed(gone.current)
    await gone.update(lambda lay: lay.drop(leaving, *sorted(lay.held_by(leaving))))
    await gone.update(lambda lay: lay.promote(leaving))


async def test_decommission_reports_progress_and_returns_once_removed(tmp_path: Path) -> None:
    lines: list[str] = []
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=2) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_move_by_hand, c, "node-3")
            with trio.fail_after(20):
                await decommission("node-3", c.nodes["node-1"].url, c.cluster.keyring(),
                                   interval=0.05, report=lines.append)
        # the via node saw it first; the others follow by the layout's push
        await c.wait_for(lambda: all(_service(n).current.role("node-3") is Role.REMOVED
                                     for n in c.nodes.values()), within=10)
    assert lines[0] == "node-3 is draining; waiting until it holds no slot"
    assert any("node-3: draining, holds" in line for line in lines)
    assert "holds 0 slot replicas" in lines[-1]


async def test_decommission_errors_are_one_clear_line(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 2, transport="memory", replicas=2) as c:
        url = c.nodes["node-1"].url
        with pytest.raises(ConfigError, match="not a member"):
            await decommission("nope", url, c.cluster.keyring())
        with pytest.raises(ConfigError, match=r"401.*key-file"):
            await decommission("node-2", url, None)
        with pytest.raises(ConfigError, match="still holds slots after"):
            # (the mover drains an empty node in moments: a deadline shorter
            # than the first poll is what shows the message)
            await decommission("node-2", url, c.cluster.keyring(), interval=0.05,
                               give_up_after=1e-6)
        # the refusals changed nothing; the last call did start the drain
        assert _service(c.nodes["node-1"]).current.role("node-2") in (Role.DRAINING,
                                                                       Role.REMOVED)
        with pytest.raises(ConfigError, match="last node"):
            await decommission("node-1", url, c.cluster.keyring())


def test_cli_decommission_with_nobody_there(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "decommission", "node-2", "--via", "http://127.0.0.1:9"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("rimio: error: ") and "unreachable" in err[0]
