"""The error hierarchy, re-exported for embedding programs.

The classes live in `rimio.core.errors` (so every layer can raise them);
`rimio.api.errors` maps them to HTTP statuses.
"""

from __future__ import annotations

from rimio.core.errors import (
    BadRequest,
    Busy,
    ConfigError,
    Conflict,
    DiskError,
    Gone,
    InsufficientStorage,
    InvalidPath,
    MalformedHead,
    MethodNotAllowed,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    PreconditionFailed,
    QuorumLost,
    RangeNotSatisfiable,
    RimioError,
    ShuttingDown,
    StorageCorrupt,
    Unauthorized,
    rimio_error_in,
)

__all__ = [
    "BadRequest",
    "Busy",
    "ConfigError",
    "Conflict",
    "DiskError",
    "Gone",
    "InsufficientStorage",
    "InvalidPath",
    "MalformedHead",
    "MethodNotAllowed",
    "NotFound",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "PreconditionFailed",
    "QuorumLost",
    "RangeNotSatisfiable",
    "RimioError",
    "ShuttingDown",
    "StorageCorrupt",
    "Unauthorized",
    "rimio_error_in",
]
