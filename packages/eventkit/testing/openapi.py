"""Fuzzing a service from its own OpenAPI document.

Every service's schemathesis test does the same two things: run the app in
uvicorn on a free loopback port (``serving``, from :mod:`eventkit.testing.server`),
then send generated requests from a worker thread and collect the server
errors. Written once here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase


def fuzz(
    base_url: str, document: dict[str, Any], token: str, examples: int
) -> tuple[list[str], Counter[int]]:
    """Generated requests for every operation; the 5xx answers found, and all statuses.

    Blocking (schemathesis calls over HTTP): run it in a thread. ``/readyz``
    may answer 503 by design while a consumer is still joining its group.
    """
    schema = schemathesis.openapi.from_dict(document)
    server_errors: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here

        @hypothesis.settings(
            max_examples=examples, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call(
                base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            statuses[response.status_code] += 1
            if response.status_code >= 500 and case.path != "/readyz":
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        call()
    return server_errors, statuses
