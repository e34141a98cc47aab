"""The public API against its own OpenAPI document, with schemathesis.

A live node on loopback gets a few objects, then every documented operation
is called with generated requests: valid ones (positive mode), checked for
statuses, content types, required headers and bodies that match the
document, and invalid ones (negative mode), checked for answers the document
lists. Neither may get a 5xx other than 503/507. The objects written first
must be intact afterwards (the fuzzer writes and deletes under other paths
too, so the seeds live under a prefix it is unlikely to hit, and each is
checked by content).
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import EXAMPLES, LiveNode

SEEDS = {f"zz-fuzz-seed/object-{i}": hashlib.sha256(str(i).encode()).digest() * (i + 1)
         for i in range(4)}
# A 5xx the node may answer with: busy / quorum / disk (503), disk full (507).
ALLOWED_5XX = {503, 507}


def no_server_fault(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx but the ones that say "not now" or "no room"."""
    if response.status_code >= 500 and response.status_code not in ALLOWED_5XX:
        raise AssertionError(f"{case.method} {case.formatted_path} answered "
                             f"{response.status_code}: {response.content[:200]!r}")
    return None


POSITIVE_CHECKS = [no_server_fault, status_code_conformance, content_type_conformance,
                   response_headers_conformance, response_schema_conformance]
NEGATIVE_CHECKS = [no_server_fault, status_code_conformance, response_schema_conformance]


def _seed(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for path, data in SEEDS.items():
            assert client.put(f"/api/v1/blobs/{path}", content=data).status_code == 201


def _check_seeds(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for path, data in SEEDS.items():
            r = client.get(f"/api/v1/blobs/{path}")
            assert r.status_code == 200, path
            assert r.content == data, path


def _run(schema: Any, url: str, mode: GenerationMode, checks: list[Any]) -> int:
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not operation.path_parameters \
                and not operation.query and not operation.headers and not operation.body:
            continue  # nothing to make invalid (healthz, nodes, the document)

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(base_url=url, checks=checks, timeout=30)

        call()
    return calls


@pytest.mark.timeout(600)
def test_the_api_holds_to_its_document(live_node: LiveNode) -> None:
    _seed(live_node.url)
    schema = schemathesis.openapi.from_url(f"{live_node.url}/api/v1/openapi.json")
    calls = _run(schema, live_node.url, GenerationMode.POSITIVE, POSITIVE_CHECKS)
    calls += _run(schema, live_node.url, GenerationMode.NEGATIVE, NEGATIVE_CHECKS)
    assert calls >= 10
    _check_seeds(live_node.url)
