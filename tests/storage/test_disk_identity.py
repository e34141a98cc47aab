"""Identity files on real disk directories: looking, refusing, writing, adopting."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rimio.cluster.layout import LAYOUT_FILE
from rimio.core.disk_identity import DiskAction, DiskIdentity, DiskState, encode_identity
from rimio.core.errors import ConfigError
from rimio.storage.disk import NODE_FILE, lock_disk
from rimio.storage.disk_identity import (
    DATA_ENTRIES,
    IDENTITY_FILE,
    check_disks,
    claim_identities,
    init_disks,
    look_at_disk,
    read_identity,
    write_identity,
)


def _files(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _claim(disks: list[Path]) -> int:
    return claim_identities(disks, cluster="c", node_id="n1", now=100.0)


def test_the_layout_file_is_one_of_the_data_entries() -> None:
    assert LAYOUT_FILE in DATA_ENTRIES


def test_what_a_disk_holds(tmp_path: Path) -> None:
    assert look_at_disk(tmp_path / "none").state is DiskState.MISSING
    blank = tmp_path / "blank"
    (blank / "lost+found").mkdir(parents=True)
    (blank / ".lock").touch()
    assert look_at_disk(blank).state is DiskState.BLANK
    old = tmp_path / "old"
    (old / "slots").mkdir(parents=True)
    (old / NODE_FILE).write_text(json.dumps({"node_id": "n7", "incarnation": 3}))
    seen = look_at_disk(old)
    assert (seen.state, seen.legacy_owner) == (DiskState.LEGACY, "n7")
    file = tmp_path / "file"
    file.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is not a directory"):
        look_at_disk(file)


def test_a_first_start_writes_one_identity_per_disk(tmp_path: Path) -> None:
    disks = [tmp_path / "a", tmp_path / "b"]
    disks[0].mkdir()
    assert _claim(disks) == 2
    first = [read_identity(d) for d in disks]
    assert [(i.cluster, i.node_id, i.disk_index, i.created_at) for i in first if i] == [
        ("c", "n1", 0, 100.0), ("c", "n1", 1, 100.0)]
    assert first[0] and first[1] and first[0].disk_uuid != first[1].disk_uuid
    assert not [p for d in disks for p in d.iterdir() if p.name.endswith(".tmp")]
    # A restart keeps them as they are.
    assert check_disks(disks, cluster="c", node_id="n1") == [DiskAction.KEEP] * 2
    assert _claim(disks) == 0
    assert [read_identity(d) for d in disks] == first


def test_an_older_rimio_s_disk_is_adopted_in_place(tmp_path: Path) -> None:
    disk = tmp_path / "a"
    (disk / "meta").mkdir(parents=True)
    (disk / NODE_FILE).write_text(json.dumps({"node_id": "n1", "incarnation": 0}))
    assert _claim([disk]) == 1
    identity = read_identity(disk)
    assert identity is not None and identity.node_id == "n1"
    assert (disk / "meta").is_dir()


@pytest.mark.parametrize("content", [
    b"", b"{not json", b'{"format": 1}', b"\x00" * 10, b"x" * 10_000,
    encode_identity(DiskIdentity("c", "n1", "u", 0, 0.0)).replace(b'"format": 1', b'"format": 9'),
], ids=["empty", "not-json", "missing-keys", "binary", "huge", "newer-format"])
def test_a_corrupt_identity_file_is_one_clear_line(tmp_path: Path, content: bytes) -> None:
    disk = tmp_path / "a"
    disk.mkdir()
    (disk / IDENTITY_FILE).write_bytes(content)
    before = _files(tmp_path)
    with pytest.raises(ConfigError) as caught:
        check_disks([disk], cluster="c", node_id="n1")
    message = str(caught.value)
    assert message.startswith(f"{disk / IDENTITY_FILE} is unusable: ")
    assert "\n" not in message
    with pytest.raises(ConfigError):
        _claim([disk])
    assert _files(tmp_path) == before


def test_an_unreadable_identity_file_is_one_clear_line(tmp_path: Path) -> None:
    disk = tmp_path / "a"
    (disk / IDENTITY_FILE).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(ConfigError, match="cannot be read"):
        check_disks([disk], cluster="c", node_id="n1")


def test_refusals_write_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_identity(a, DiskIdentity("c", "n2", "u", 0, 0.0))
    b.mkdir()
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match="belongs to node 'n2'"):
        _claim([a, b])
    write_identity(a, DiskIdentity("c", "n1", "u", 0, 0.0))
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match="looks unmounted"):
        _claim([a, b])
    with pytest.raises(ConfigError, match="is missing"):
        _claim([a, tmp_path / "gone"])
    assert _files(tmp_path) == before


def test_init_disk_brings_a_replaced_disk_back(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _claim([a, b])
    for p in b.iterdir():
        p.unlink()
    b.rmdir()
    with pytest.raises(ConfigError, match="is missing"):
        check_disks([a, b], cluster="c", node_id="n1")
    assert init_disks([a, b], cluster="c", node_id="n1", replacing=[b], now=5.0) == 1
    identity = read_identity(b)
    assert identity is not None and (identity.disk_index, identity.created_at) == (1, 5.0)
    assert check_disks([a, b], cluster="c", node_id="n1") == [DiskAction.KEEP] * 2
    with pytest.raises(ConfigError, match="not blank"):
        init_disks([a, b], cluster="c", node_id="n1", replacing=[b], now=6.0)


def test_init_disk_refuses_while_the_node_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _claim([a])
    b.mkdir()
    fd = lock_disk(a)
    try:
        with pytest.raises(ConfigError, match="in use by another rimio process"):
            init_disks([a, b], cluster="c", node_id="n1", replacing=[b], now=5.0)
    finally:
        os.close(fd)
    assert read_identity(b) is None
