"""Object operations: put / get / delete / list, decided per slot's replica set."""

from rimio.ops.objects import ObjectService, PutRequest, Resolution

__all__ = ["ObjectService", "PutRequest", "Resolution"]
