"""Schemathesis against the identity service's /openapi.json: whatever it sends, no 5xx, and
every answer fits the schema the document declares for it.

The service runs in uvicorn on a real port with its database and Kafka;
generated requests go over HTTP from a worker thread with a platform
manager's token (signed by identity itself), so they reach the handlers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

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

from guestlist.stack.smtp_sink import SmtpSink
from services.identity.testing import make_admin, open_platform, serving_identity

pytestmark = pytest.mark.integration
# Signing out with the shared token would turn every later request into a 401.
LAST = ("DELETE", "/v1/sessions/current")


def fuzz(
    base_url: str, document: dict[str, Any], headers: dict[str, str], examples: int
) -> tuple[list[str], Counter[int]]:
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    statuses: Counter[int] = Counter()
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
            statuses[response.status_code] += 1
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
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with serving_identity(database_url, kafka_bootstrap,
                                smtp_port=smtp_sink.port) as (base_url, app):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            admin = await make_admin(app, client)
            await open_platform(client, admin)
            document = (await client.get("/openapi.json")).json()
        problems, statuses = await asyncio.to_thread(fuzz, base_url, document, admin, 20)

    assert {"/v1/users", "/v1/users/{user_id}", "/v1/sessions", "/v1/me/export",
            "/v1/internal/personal-data-keys/{subject_id}",
            "/.well-known/jwks.json"} <= set(document["paths"])
    assert problems == []
    # the token works: generated requests reached the handlers (reads, unknown people)
    assert statuses[200] > 0 and statuses[404] > 0, statuses
