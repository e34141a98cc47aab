"""The node's disk: per-slot SQLite metadata (`file_entries`) and part files."""

from rimio.storage.store import LocalStore, StoredObject

__all__ = ["LocalStore", "StoredObject"]
