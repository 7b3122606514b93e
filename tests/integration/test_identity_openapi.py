"""Schemathesis against the identity service's /openapi.json: whatever it sends, no 5xx, and
every answer fits the schema the document declares for it (each route declares its body).

The service runs in uvicorn on a real port with its database and Kafka, next
to the audit service its data export reads; generated requests go over HTTP
from a worker thread with a platform manager's token (signed by identity
itself), so they reach the handlers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from services.identity.audit_testing import identity_with_audit
from services.identity.testing import make_admin, open_platform

pytestmark = pytest.mark.integration
# Signing out with the shared token would turn every later request into a 401.
LAST = ("DELETE", "/v1/sessions/current")


@pytest.fixture
async def audit_database_url(pg_server: Any) -> AsyncIterator[str]:
    name = f"t_{uuid4().hex[:12]}"
    yield await pg_server.create_database(name)
    await pg_server.drop_database(name)


def fuzz(
    base_url: str, document: dict[str, Any], headers: dict[str, str], examples: int
) -> tuple[list[str], Counter[tuple[str, str, int]]]:
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    statuses: Counter[tuple[str, str, int]] = Counter()
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    operations.sort(key=lambda op: (op.method.upper(), op.path) == LAST)
    for operation in operations:

        @hypothesis.settings(
            max_examples=examples, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            statuses[case.method.upper(), case.path, response.status_code] += 1
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            # /readyz answers 503 by design while a consumer is still joining its group.
            if response.status_code >= 500 and case.path != "/readyz":
                problems.append(f"{where}: {response.text[:300]}")
                return
            try:
                case.validate_response(
                    response, checks=[response_schema_conformance, content_type_conformance]
                )
            except (AssertionError, FailureGroup) as error:  # collect it, keep fuzzing
                problems.append(f"{where}: {str(error)[:500]}")

        call()
    return problems, statuses


async def test_generated_requests_get_no_server_error_and_answers_that_fit_the_schema(
    database_url: str, audit_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with identity_with_audit(database_url, audit_database_url, kafka_bootstrap,
                                   tmp_path) as stack:
        base_url = stack.identity_url
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            admin = await make_admin(stack.identity, client)
            await open_platform(client, admin)
            document = (await client.get("/openapi.json")).json()
        problems, statuses = await asyncio.to_thread(fuzz, base_url, document, admin, 20)

    assert {"/v1/users", "/v1/users/{user_id}", "/v1/sessions", "/v1/me/export",
            "/v1/internal/personal-data-keys/{subject_id}",
            "/.well-known/jwks.json"} <= set(document["paths"])
    assert problems == []
    by_status = Counter[int]()
    for (_, _, status), count in statuses.items():
        by_status[status] += count
    # the token works: generated requests reached the handlers (reads, unknown people)
    assert by_status[200] > 0 and by_status[404] > 0, statuses
    # every 200/201 body has a declared model, and the export's was checked against its own
    untyped = [f"{method.upper()} {route}" for route, path in document["paths"].items()
               for method, operation in path.items() for code in ("200", "201")
               if code in operation["responses"] and "$ref" not in
               operation["responses"][code]["content"]["application/json"]["schema"]]
    assert untyped == []
    assert statuses["GET", "/v1/me/export", 200] > 0, statuses
