"""Schemathesis against the notifications service's /openapi.json: whatever it sends, no 5xx.

The service runs in uvicorn on a real port with its database, Kafka and an
SMTP sink; generated requests go over HTTP from a worker thread with a
platform manager's token, so they reach the handlers, not just the 401.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from eventkit.testing.openapi import fuzz
from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from guestlist.stack.smtp_sink import SmtpSink
from schemas.permissions import ROLE_PERMISSIONS
from services.notifications.bootstrap import build_app
from services.notifications.settings import NotificationsSettings

pytestmark = pytest.mark.integration


async def test_generated_requests_never_get_a_server_error(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    await create_topics(kafka_bootstrap, {"notifications.delivery": 3})
    key = SigningKey("fuzz")
    token = key.mint(sub=str(uuid4()), permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
    async with serve_jwks(key) as jwks:
        settings = NotificationsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, smtp_port=smtp_sink.port,
            user_topic=await kafka_topics("identity.user"),
            platform_topic=await kafka_topics("identity.platform"),
            invitation_topic=await kafka_topics("invitations.invitation"),
        )
        async with serving(build_app(settings)) as base_url:
            async with httpx.AsyncClient() as client:
                document = (await client.get(f"{base_url}/openapi.json")).json()
            errors, statuses = await asyncio.to_thread(fuzz, base_url, document, token, 30)

    assert {"/v1/notifications", "/v1/notifications/{notification_id}",
            "/v1/notifications/{notification_id}/retry", "/v1/templates",
            "/v1/templates/{name}/preview"} <= set(document["paths"])
    assert errors == []
    # the token works: generated requests reached the handlers
    assert statuses[200] > 0 and statuses[404] > 0, statuses
