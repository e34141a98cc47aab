"""The HTTP application of one node: the quart-trio app, and the lean object path beside it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import Response, request
from quart_trio import QuartTrio

from rimio.api.asgi_blobs import BlobApp
from rimio.api.body import BackpressureHTTPConnection, BoundedRequest, close_if_body_unread
from rimio.api.dispatch import NodeApp
from rimio.api.errors import install_error_handlers
from rimio.api.internal import internal_routes
from rimio.api.public import public_routes
from rimio.api.status import StatusHead, StatusSections, node_status
from rimio.config import ClusterConfig
from rimio.core.frames import Status
from rimio.core.keyring import KeyRing
from rimio.core.layout import Role
from rimio.ops.objects import ObjectService
from rimio.ops.replica_service import ReplicaService

if TYPE_CHECKING:
    from rimio.cluster.layout import LayoutService
    from rimio.cluster.membership import MembershipService


@dataclass(slots=True)
class NodeView:
    """What the routes need to know about the node that serves them.

    `address` is the node's final gossip address (its port is known even
    when it listens on port 0: the node binds before building the view).
    """

    node_id: str
    cluster: ClusterConfig
    address: str
    objects: ObjectService
    membership: MembershipService
    layout: LayoutService
    keyring: KeyRing | None = None
    max_frame_size: int = 1 << 20
    # This node's replica for the replica protocol's routes (None: not served).
    replicas: ReplicaService | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The counters of the services the node runs (`GET /api/v1/status` and
    # `GET /internal/v1/stats`), the clocks, and when the node started (on
    # `monotonic`)
    status_sections: StatusSections = field(default_factory=StatusSections)
    wall_clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    started: float = field(default_factory=time.monotonic)

    @property
    def cluster_name(self) -> str:
        return self.cluster.name

    def nodes(self) -> list[dict[str, Any]]:
        """The membership view, each member with its layout role and the number
        of slot replicas it holds; layout members the membership does not know
        (yet, or any more) are listed with status `unknown`."""
        layout = self.layout.current
        out = []
        for m in self.membership.members():
            role = layout.role(m.node_id)
            out.append({"node_id": m.node_id, "address": m.address, "status": m.status.value,
                        "incarnation": m.incarnation,
                        "role": None if role is None else role.value,
                        "slots": len(layout.held_by(m.node_id))})
        seen = {item["node_id"] for item in out}
        for node_id, member in sorted(layout.members.items()):
            if node_id not in seen:
                out.append({"node_id": node_id, "address": member.address,
                            "status": "unknown", "incarnation": 0,
                            "role": member.role.value, "slots": len(layout.held_by(node_id))})
        return out

    def node_stats(self) -> dict[str, Any]:
        """`GET /internal/v1/stats`: the storage engine's counters, the
        coordinator's (`read_repair`) when it coordinates, and the section of
        every service the node runs, as `GET /api/v1/status` reports them
        (`movement`, `anti_entropy`, `scrub`, `gc`, `tombstones`, ...; RFC 0018)."""
        stats = self.objects.storage_stats()
        if self.objects.coordinator is not None:
            stats.update(self.objects.coordinator.stats())
        sections, _failed = self.status_sections.collect()
        stats.update(sections)
        return stats

    def status(self) -> dict[str, Any]:
        """`GET /api/v1/status`: this node's own state and its services'
        counters (`rimio.api.status`, RFC 0018)."""
        layout = self.layout.current
        head = StatusHead(node_id=self.node_id, cluster=self.cluster.name,
                          time=self.wall_clock(),
                          uptime_seconds=max(0.0, self.monotonic() - self.started),
                          layout_version=layout.version,
                          slots_held=len(layout.held_by(self.node_id)))
        return node_status(head, self.status_sections)

    def cluster_state(self) -> dict[str, Any]:
        """`GET /api/v1/cluster`: the layout's version, R and W, and how many
        slots do not yet sit where the layout wants them."""
        layout = self.layout.current
        return {"layout_version": layout.version, "replicas": layout.effective_replicas,
                "write_quorum": layout.quorum, "moving_slots": layout.moving_slots()}

    def gossip_seeds(self) -> list[str]:
        """Addresses of members this node believes alive, itself first."""
        return [self.address] + [m.address for m in self.membership.members()
                                 if m.status is Status.ALIVE and m.node_id != self.node_id]

    def bootstrap_state(self) -> dict[str, Any]:
        """What a joining node needs: the cluster's shape (never its key)."""
        c = self.cluster
        return {
            "cluster": c.name,
            "replication": {"replicas": c.replication.replicas,
                            "min_write_replicas": c.replication.min_write_replicas,
                            "total_slots": c.replication.total_slots},
            "storage": {"part_size_bytes": c.storage.part_size_bytes,
                        "max_object_bytes": c.storage.max_object_bytes},
            "membership": dict(c.membership),
            # The shared layout's members that hold or will hold data: a joining
            # node exchanges layouts with them (signed for their ids).
            "layout": [{"node_id": n, "address": m.address, "role": m.role.value}
                       for n, m in sorted(self.layout.current.members.items())
                       if m.role is not Role.REMOVED],
            "members": self.nodes(),
            "slot_epoch": self.layout.current.version,
            "keyed": self.keyring is not None,
            # Token digests, so a joined node guards its API like the others
            # (only members get this when the cluster has a key).
            **({"access": {"tokens": [{"name": t.name, "sha256": t.sha256.hex(),
                                       "scope": t.scope.value} for t in c.access.tokens]}}
               if c.access is not None else {}),
        }


def create_app(view: NodeView) -> NodeApp:
    """The node's ASGI app: object requests on the lean path, the rest on quart."""
    return NodeApp(BlobApp(view.objects, view.node_id), create_quart_app(view))


def create_quart_app(view: NodeView) -> QuartTrio:
    """Every route but the objects' own (`/api/v1/blobs/<path>`)."""
    app = QuartTrio("rimio", static_folder=None)
    app.asgi_http_class = BackpressureHTTPConnection
    app.request_class = BoundedRequest
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # enforced by ObjectService against the node's config
        RESPONSE_TIMEOUT=None,  # a 1 GiB GET on a slow link must not be cut off
        BODY_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    install_error_handlers(app)

    @app.after_request
    async def _connection_hygiene(response: Response) -> Response:
        return close_if_body_unread(request, response)  # type: ignore[no-any-return]

    app.register_blueprint(public_routes(view))
    app.register_blueprint(internal_routes(view, view.replicas))
    return app
