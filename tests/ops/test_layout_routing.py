"""ObjectService reads placement from the shared layout: a slot that moves
to a joined node is served by its holder until the copy is confirmed."""

from pathlib import Path

import pytest

from rimio.cluster.layout import StaticPlacement
from rimio.config import single_node_config
from rimio.core.errors import QuorumLost
from rimio.core.layout import Layout
from rimio.core.slots import slot_for_path
from rimio.ops.objects import ObjectService
from rimio.storage.store import LocalStore


def _path_in(layout: Layout, wanted: str, holder: str) -> str:
    for i in range(10_000):
        path = f"p/{i}"
        slot = slot_for_path(path, layout.total_slots)
        if layout.targets(slot) == (wanted,) and layout.holders(slot) == (holder,):
            return path
    raise AssertionError("no such path")


@pytest.mark.parametrize("me", ["node-1", "node-3"])
async def test_a_moving_slot_is_served_by_its_holder(tmp_path: Path, me: str) -> None:
    founding = Layout.founding({"node-1": "127.0.0.1:1", "node-2": "127.0.0.1:2"},
                               total_slots=64, replicas=1, write_quorum=None)
    layout = founding.join("node-3", "127.0.0.1:3")
    path = _path_in(layout, "node-3", "node-1")
    config = single_node_config(tmp_path / "d", node_id=me)
    store = LocalStore(config.spec.disks, total_slots=64, part_size=4096)
    service = ObjectService(config, store, placement=StaticPlacement(layout))
    res, forward_to = service.route(path)
    assert res.replicas == ("node-3",) and res.slot_epoch == layout.version
    assert forward_to == (None if me == "node-1" else "127.0.0.1:1")
    # once node-3 confirmed its copy, node-3 serves it
    moved = StaticPlacement(layout.confirm("node-3", res.slot_id))
    service = ObjectService(config, store, placement=moved)
    assert service.route(path)[1] == (None if me == "node-3" else "127.0.0.1:3")


async def test_more_than_one_target_is_not_served_yet(tmp_path: Path) -> None:
    layout = Layout.founding({"node-1": "127.0.0.1:1", "node-2": "127.0.0.1:2"},
                             total_slots=64, replicas=2, write_quorum=None)
    config = single_node_config(tmp_path / "d")
    service = ObjectService(config, LocalStore(config.spec.disks, total_slots=64, part_size=4096),
                            placement=StaticPlacement(layout))
    with pytest.raises(QuorumLost):
        service.route("a")
