"""Schemathesis against the invitations service's /openapi.json: whatever it sends, no 5xx.

The service runs in uvicorn on a real port with its database and Kafka; the
generated requests go over HTTP from a worker thread, with a manager's token
(so they reach the handlers, not just the 401).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any
from uuid import uuid4

import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase

from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from schemas.permissions import ROLE_PERMISSIONS
from services.invitations.bootstrap import build_app
from services.invitations.settings import InvitationsSettings
from services.invitations.testing import INVITATION_TOPIC

pytestmark = pytest.mark.integration


def fuzz(
    base_url: str, document: dict[str, Any], token: str, examples: int
) -> tuple[list[str], Counter[int]]:
    schema = schemathesis.openapi.from_dict(document)
    server_errors: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/v1/"):
            continue  # /readyz may rightly answer 503 while the consumer joins its group

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
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        call()
    return server_errors, statuses


async def test_generated_requests_never_get_a_server_error(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    await create_topics(kafka_bootstrap, {INVITATION_TOPIC: 3})
    key = SigningKey("fuzz")
    token = key.mint(sub=str(uuid4()), permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
    async with serve_jwks(key) as jwks:
        settings = InvitationsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, user_topic=await kafka_topics("identity.user"),
            delivery_topic=await kafka_topics("notifications.delivery"),
            lookup_rate_limit=100_000,
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(build_app(settings), log_config=None,
                                               access_log=False))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(120):
                while not server.started:
                    assert not serving.done(), "the service did not start"
                    await asyncio.sleep(0.05)
            async with httpx.AsyncClient() as client:
                document = (await client.get(f"{base_url}/openapi.json")).json()
            errors, statuses = await asyncio.to_thread(fuzz, base_url, document, token, 25)
        finally:
            server.should_exit = True
            await serving
            sock.close()

    assert {"/v1/invitations", "/v1/invitations/bulk", "/v1/invitations/lookup"} <= set(
        document["paths"]
    )
    assert errors == []
    # the token works: generated requests reached the handlers and changed things
    assert statuses[201] > 0, statuses
