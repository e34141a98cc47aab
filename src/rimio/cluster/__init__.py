"""Membership service, registry and replica client (Phase 2)."""
