"""The node serves its OpenAPI document, and the document covers every public route."""

from __future__ import annotations

import httpx

from rimio.api.openapi import openapi_document

ROUTES = {
    "/api/v1/blobs/{path}": {"put", "get", "head", "delete"},
    "/api/v1/blobs": {"get"},
    "/api/v1/healthz": {"get"},
    "/api/v1/nodes": {"get"},
    "/api/v1/cluster": {"get"},
    "/api/v1/slots/resolve": {"get"},
    "/api/v1/status": {"get"},
    "/api/v1/openapi.json": {"get"},
}


async def test_the_document_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    served = r.json()
    assert served == openapi_document()
    assert served["openapi"].startswith("3.")


def test_every_public_route_and_its_errors_are_described() -> None:
    doc = openapi_document()
    assert {p: set(ops) for p, ops in doc["paths"].items()} == ROUTES
    blob = doc["paths"]["/api/v1/blobs/{path}"]
    assert {"201", "200", "400", "408", "409", "412", "413", "503", "507"} <= set(
        blob["put"]["responses"])
    assert {"200", "206", "404", "410", "416"} <= set(blob["get"]["responses"])
    for ops in doc["paths"].values():
        for op in ops.values():
            assert "503" in op["responses"]
    error = doc["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
