"""Rimio: an object store for small edge clusters.

The package root re-exports the names an embedding program needs: the
`Node`, its configuration, and the error hierarchy.
"""

from rimio.config import ClusterConfig, NodeConfig, load_config
from rimio.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    QuorumLost,
    RangeNotSatisfiable,
    RimioError,
)
from rimio.node import Node

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "ClusterConfig",
    "Conflict",
    "Gone",
    "Node",
    "NodeConfig",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "QuorumLost",
    "RangeNotSatisfiable",
    "RimioError",
    "__version__",
    "load_config",
]
