"""`GET /api/v1/status`: what one node reports about itself (RFC 0018).

The document has a fixed head (the node's id, cluster, uptime, layout version,
slots held, the time it was made) and then one section per background
service: anti-entropy, read repair, verified reads, slot movement, scrub, GC.
Each section comes from a named *provider*, a callable that returns the
service's counters as a JSON-able dict; the node registers one per service it
runs (`StatusSections.add`), so wiring a new service in is one line, and a
service the node does not run (yet) has no section at all rather than a
section of made-up zeros.

Only the names in `SECTIONS` can be registered: every section the endpoint can
answer with is named, and described in the OpenAPI document, before it ships.
A provider that raises does not take the endpoint down: its section is left
out and the error is named under `unavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("rimio.status")

StatusProvider = Callable[[], Mapping[str, Any]]
"""A service's counters, read when a status is asked for (cheap, no I/O)."""

# Every section a status can carry, in the order the document lists them.
SECTIONS = ("anti_entropy", "read_repair", "verify", "movement", "scrub", "gc", "tombstones")


class StatusSections:
    """The node's named status providers."""

    def __init__(self) -> None:
        self._providers: dict[str, StatusProvider] = {}

    def add(self, name: str, provider: StatusProvider) -> None:
        """Report `provider()` as section `name` (one of `SECTIONS`, once)."""
        if name not in SECTIONS:
            raise ValueError(f"unknown status section {name!r}: add it to SECTIONS "
                             "and to the OpenAPI document first")
        if name in self._providers:
            raise ValueError(f"status section {name!r} already has a provider")
        self._providers[name] = provider

    def names(self) -> list[str]:
        return [name for name in SECTIONS if name in self._providers]

    def collect(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Each registered section's counters, and the sections whose provider
        failed (name -> the error)."""
        sections: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for name in self.names():
            try:
                sections[name] = dict(self._providers[name]())
            except Exception as exc:  # one broken counter must not hide the others
                log.exception("status section %s failed", name)
                failed[name] = f"{type(exc).__name__}: {exc}"
        return sections, failed


@dataclass(frozen=True, slots=True)
class StatusHead:
    """The part of a status every node has, whatever it runs."""

    node_id: str
    cluster: str
    time: float  # wall clock, seconds since 1970, when the status was made
    uptime_seconds: float
    layout_version: int
    slots_held: int


def node_status(head: StatusHead, sections: StatusSections) -> dict[str, Any]:
    """The status document: `head`'s fields, each section present, and
    `unavailable` (sections whose provider failed; empty when none did)."""
    found, failed = sections.collect()
    return {"node_id": head.node_id, "cluster": head.cluster, "time": head.time,
            "uptime_seconds": head.uptime_seconds, "layout_version": head.layout_version,
            "slots_held": head.slots_held, **found, "unavailable": failed}
