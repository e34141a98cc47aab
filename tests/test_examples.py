import shutil
import subprocess
import sys
from pathlib import Path

from rimio.config import load_config, write_key_file

ROOT = Path(__file__).resolve().parents[1]


def test_example_configs_parse(tmp_path: Path) -> None:
    single = load_config(ROOT / "examples/single-node.yaml")
    assert single.effective_replicas == 1 and single.write_quorum == 1
    # The cluster example names a key file beside it, made by `rimio keygen`.
    shutil.copy(ROOT / "examples/three-nodes.yaml", tmp_path)
    write_key_file(tmp_path / "cluster.key")
    three = load_config(tmp_path / "three-nodes.yaml")
    assert [n.node_id for n in three.nodes] == ["node-1", "node-2", "node-3"]
    assert three.write_quorum == 2
    assert three.key_file == tmp_path / "cluster.key"
    three.check_keyed()
    assert three.nodes[0].disks[0] == tmp_path / "../rimio-data/node-1"


def test_embedding_example_runs() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples/embed.py")], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "PUT -> 201" in out.stdout
    assert "GET -> 200 hello edge" in out.stdout
