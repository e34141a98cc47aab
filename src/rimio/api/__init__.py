"""HTTP routes: `/api/v1` for clients (and `/internal/v1` for nodes, later)."""

from rimio.api.app import create_app

__all__ = ["create_app"]
