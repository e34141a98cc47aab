"""`GET /api/v1/status` (RFC 0018): the sections registry alone, then a real node's
answer against the schema the OpenAPI document publishes, and behind tokens."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs  # schemathesis's validator
import pytest

from rimio.api.access import token_digest
from rimio.api.openapi import openapi_document, status_schema
from rimio.api.status import SECTIONS, StatusHead, StatusSections, node_status
from rimio.config import AccessConfig, AccessToken, Scope, StorageConfig, single_node_config
from rimio.node import Node

PART = 4096  # the `node` fixture's part size

HEAD = StatusHead(node_id="n1", cluster="c", time=1000.0, uptime_seconds=5.0,
                  layout_version=3, slots_held=7)


def test_only_named_sections_are_registered_once() -> None:
    sections = StatusSections()
    with pytest.raises(ValueError, match="unknown status section"):
        sections.add("made_up", dict)
    sections.add("gc", lambda: {"swept": 1})
    with pytest.raises(ValueError, match="already"):
        sections.add("gc", dict)


def test_a_section_is_present_only_when_registered_in_a_fixed_order() -> None:
    sections = StatusSections()
    assert node_status(HEAD, sections) == {
        "node_id": "n1", "cluster": "c", "time": 1000.0, "uptime_seconds": 5.0,
        "layout_version": 3, "slots_held": 7, "unavailable": {}}
    counts = {"n": 0}

    def gc() -> dict[str, int]:
        counts["n"] += 1  # read at each status, not at registration
        return {"swept": counts["n"]}

    sections.add("gc", gc)
    sections.add("anti_entropy", lambda: {"rounds": 2})
    status = node_status(HEAD, sections)
    assert status["gc"] == {"swept": 1} and status["anti_entropy"] == {"rounds": 2}
    assert "scrub" not in status and "verify" not in status
    assert node_status(HEAD, sections)["gc"] == {"swept": 2}
    assert sections.names() == ["anti_entropy", "gc"]  # the order of SECTIONS


def test_a_failing_provider_is_named_and_the_others_still_answer() -> None:
    sections = StatusSections()

    def broken() -> dict[str, int]:
        raise RuntimeError("disk gone")

    sections.add("scrub", broken)
    verify = {"verified_parts": 3, "errors": 0, "quarantined": 0}
    sections.add("verify", lambda: verify)
    status = node_status(HEAD, sections)
    assert "scrub" not in status and status["verify"] == verify
    assert status["unavailable"] == {"scrub": "RuntimeError: disk gone"}
    jsonschema_rs.validate(status_schema(), status)


def test_every_section_is_described() -> None:
    described = status_schema()["properties"]
    assert set(SECTIONS) <= set(described)
    served = openapi_document()["paths"]["/api/v1/status"]["get"]["responses"]["200"]
    assert served["content"]["application/json"]["schema"] == status_schema()


async def test_a_node_reports_itself_and_its_services(node: Node,
                                                      client: httpx.AsyncClient) -> None:
    body = os.urandom(20 * PART + 1)  # past the inline limit: 21 part files, each checked
    assert (await client.put("/api/v1/blobs/a/b", content=body)).status_code == 201
    first = (await client.get("/api/v1/status")).json()
    r = await client.get("/api/v1/blobs/a/b")
    assert r.status_code == 200 and r.content == body
    r = await client.get("/api/v1/status")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    status: dict[str, Any] = r.json()
    jsonschema_rs.validate(status_schema(), status)
    assert status["node_id"] == node.node_id
    assert status["cluster"] == node.config.cluster.name
    assert node.layout is not None
    assert status["layout_version"] == node.layout.current.version
    assert status["slots_held"] == node.config.cluster.replication.total_slots  # one node
    assert status["uptime_seconds"] >= first["uptime_seconds"] > 0
    assert status["time"] >= first["time"]
    # the sections of the services this node runs, and no other
    present = {k for k in status if k in SECTIONS}
    assert present == set(node.status_sections.names())
    assert present == set(SECTIONS)  # this node runs every service
    assert status["unavailable"] == {}
    assert status["verify"]["verified_parts"] - first["verify"]["verified_parts"] == 21
    assert status["verify"]["errors"] == 0
    ae = status["anti_entropy"]
    assert ae["backlog"] == 0 and ae["failures"] == 0 and ae["last_error"] is None


TOKEN = "rimio_status-reader-token"


async def test_status_needs_a_token_when_access_is_configured(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "data", storage=StorageConfig(part_size_bytes=PART))
    access = AccessConfig((AccessToken("dash", token_digest(TOKEN), Scope.READ),))
    config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster,
                                                                     access=access))
    async with Node(config) as node, httpx.AsyncClient(base_url=node.url) as client:
        r = await client.get("/api/v1/status")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "node_id" not in r.text
        r = await client.get("/api/v1/status", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        r = await client.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["node_id"] == node.node_id
