"""Puts this directory on sys.path: the suite runs with --import-mode=importlib,
and the coordinator tests import their replica double and harness by plain name."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
