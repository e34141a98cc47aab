"""The key and token commands of the CLI, and the key a cluster needs to start."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from rimio.api.access import AccessControl
from rimio.cli import demo_configs, main
from rimio.config import ensure_key_file, load_keyring, parse_config


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rimio: error: ")
    return lines[0]


def test_keygen_writes_a_private_key_file_once(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "cluster.key"
    assert main(["keygen", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(load_keyring(key).mac_keys) == 1
    text = key.read_text()
    capsys.readouterr()
    assert main(["keygen", str(key)]) == 2
    assert "already exists" in _one_error_line(capsys)
    assert key.read_text() == text
    other = tmp_path / "other.key"
    main(["keygen", str(other)])
    assert other.read_text() != text  # a fresh key each time


def test_keygen_into_a_missing_directory_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", str(tmp_path / "nowhere" / "k")]) == 2
    assert "cannot create" in _one_error_line(capsys)


def _token_output(capsys: pytest.CaptureFixture[str], name: str, scope: str) -> tuple[str, Any]:
    assert main(["token", "new", "--name", name, "--scope", scope]) == 0
    out = capsys.readouterr().out
    first, _, rest = out.partition("\n")
    assert first.startswith("token: ")
    return first.removeprefix("token: "), yaml.safe_load(rest)


def test_token_new_prints_a_pasteable_entry_that_authenticates(
        capsys: pytest.CaptureFixture[str]) -> None:
    token, entry = _token_output(capsys, "app", "read")
    assert isinstance(entry, list) and len(entry) == 1
    assert entry[0]["name"] == "app" and entry[0]["scope"] == "read"
    assert token not in yaml.safe_dump(entry)
    other, _ = _token_output(capsys, "app", "read")
    assert other != token
    raw = {"cluster": {"name": "c"},
           "initial_cluster": {"nodes": [{"node_id": "n1", "bind_addr": "127.0.0.1:1",
                                          "disks": [{"path": "/d"}]}]},
           "access": {"tokens": entry}}
    access = parse_config(raw, Path("/")).access
    assert access is not None
    guard = AccessControl(lambda *a: None, access.tokens)  # type: ignore[arg-type,return-value]
    found = guard.match(token.encode())
    assert found is not None and found.name == "app"
    assert guard.match(other.encode()) is None


def test_token_new_refuses_bad_names_and_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "--name", "a b", "--scope", "read"]) == 2
    assert "--name" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as info:
        main(["token", "new", "--name", "a", "--scope", "admin"])
    assert info.value.code == 2


def _two_nodes(tmp_path: Path, **cluster: Any) -> Path:
    config = {"cluster": {"name": "c", **cluster}, "initial_cluster": {"nodes": [
        {"node_id": f"n{i}", "bind_addr": f"127.0.0.1:{1 + i}",
         "disks": [{"path": str(tmp_path / f"n{i}")}]} for i in (1, 2)]}}
    conf = tmp_path / "rimio.yaml"
    conf.write_text(yaml.safe_dump(config))
    return conf


def test_start_of_several_nodes_without_a_key_exits_2(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    conf = _two_nodes(tmp_path)
    assert main(["start", "--conf", str(conf), "--node", "n1"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("rimio: error: cluster.key_file: ")
    assert "cluster.insecure" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rimio.yaml"]  # nothing written


def test_join_needs_a_key_file_or_insecure(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "disk"
    assert main(["join", "cluster://127.0.0.1:1", "--node", "n9", "--listen",
                 "127.0.0.1:2", "--disk", str(disk)]) == 2
    assert "--key-file" in _one_error_line(capsys)
    assert not disk.exists()


def test_demo_makes_its_key_under_its_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    configs = demo_configs(data, 19500, 3)
    key = configs[0].cluster.key_file
    assert key == data / "cluster.key"
    ensure_key_file(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_text()
    ensure_key_file(key)  # a second run keeps the key
    assert key.read_text() == first
    configs[0].cluster.check_keyed()
