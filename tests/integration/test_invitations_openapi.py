"""Schemathesis against the invitations service's /openapi.json: whatever it sends, no 5xx.

The service runs in uvicorn on a real port with its database and Kafka; the
generated requests go over HTTP from a worker thread, with a manager's token
(so they reach the handlers, not just the 401).
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import httpx
import pytest

from eventkit.testing.openapi import fuzz
from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from schemas.permissions import ROLE_PERMISSIONS
from services.invitations.bootstrap import build_app
from services.invitations.settings import InvitationsSettings
from services.invitations.testing import ACCESS_TOPIC, INVITATION_TOPIC

pytestmark = pytest.mark.integration


async def test_generated_requests_never_get_a_server_error(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    await create_topics(kafka_bootstrap, {INVITATION_TOPIC: 3, ACCESS_TOPIC: 3})
    key = SigningKey("fuzz")
    token = key.mint(sub=str(uuid4()), permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
    async with serve_jwks(key) as jwks:
        settings = InvitationsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, user_topic=await kafka_topics("identity.user"),
            delivery_topic=await kafka_topics("notifications.delivery"),
            platform_topic=await kafka_topics("identity.platform"),
            lookup_rate_limit=100_000, read_wait_seconds=0.2,
        )
        async with serving(build_app(settings)) as base_url:
            async with httpx.AsyncClient() as client:
                document = (await client.get(f"{base_url}/openapi.json")).json()
            errors, statuses = await asyncio.to_thread(fuzz, base_url, document, token, 25)

    assert {"/v1/invitations", "/v1/invitations/bulk", "/v1/invitations/lookup"} <= set(
        document["paths"]
    )
    assert errors == []
    # the token works: generated requests reached the handlers and changed things
    assert statuses[201] > 0, statuses
