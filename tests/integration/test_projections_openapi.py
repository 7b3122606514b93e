"""Schemathesis against the projections service's /openapi.json: whatever it sends, no 5xx.

The service runs in uvicorn on a real port over its database and Kafka with a
few events applied; generated requests go over HTTP from a worker thread
with a token carrying every permission a person can hold. The live stream is
left out: it answers by never ending.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from test_projections_directory import Topics, eventually, registered, running_service
from test_projections_invitations import applied, created

from eventkit.testing.openapi import fuzz
from schemas.permissions import ROLE_PERMISSIONS

pytestmark = pytest.mark.integration


async def test_generated_requests_never_get_a_server_error(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics, over_http=True,
                               read_wait_seconds=0.2) as service:
        joined, _ = registered(service, address="fuzz@example.org", name="Fuzz")
        invited = created(service, uuid.uuid4(), inviter=uuid.uuid4(), at=datetime.now(UTC))
        await service.publish(joined, invited)
        await eventually(lambda: applied(service, "directory", 2))
        document = (await service.client.get("/openapi.json")).json()
        del document["paths"]["/v1/stream"]
        token = service.signing.mint(sub=str(uuid.uuid4()),
                                     permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
        errors, statuses = await asyncio.to_thread(fuzz, str(service.client.base_url),
                                                   document, token, 40)

    assert errors == []
    assert statuses[200] > 0 and statuses[422] > 0
