"""Fixtures for process tests; the helpers themselves live in process_harness.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test directory on
# sys.path; the test modules here import the harness by its plain name.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from process_harness import NodeDef, ProcessPool, make_nodes  # noqa: E402


@pytest.fixture
def rimio_pool(tmp_path: Path) -> Iterator[ProcessPool]:
    """Starts rimio processes; every one still running is SIGKILLed when the test ends."""
    pool = ProcessPool(tmp_path / "logs")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def one_node(tmp_path: Path) -> NodeDef:
    """A node definition: a free loopback port and a disk under tmp_path (not created)."""
    return make_nodes(tmp_path, 1)[0]
