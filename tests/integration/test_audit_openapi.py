"""Schemathesis against the audit service's /openapi.json: whatever it sends, no 5xx.

The service runs in uvicorn on a real port with its database and Kafka, a few
events already in its log; generated requests go over HTTP from a worker
thread with a token carrying view_audit_log and export_audit_log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from eventkit.personal_data import new_data_key
from eventkit.publisher import KafkaPublisher
from eventkit.testing.consumer_contract import eventually
from eventkit.testing.openapi import fuzz
from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from services.audit.bootstrap import build_app
from services.audit.settings import AuditSettings
from tests.integration.test_audit_api import Keys, registered

pytestmark = pytest.mark.integration


async def test_generated_requests_never_get_a_server_error(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path,
) -> None:
    topic = await kafka_topics("identity.user")
    prefix = topic.split(".")[0]
    key = SigningKey("fuzz")
    token = key.mint(sub=str(uuid4()), permissions=["view_audit_log", "export_audit_log"])
    async with serve_jwks(key) as jwks:
        settings = AuditSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, audit_consumer_group=f"{prefix}-audit",
            audit_topic_pattern=rf"^{prefix}\.(?!.*\.dlq$)",
            audit_access_topic=await kafka_topics("audit.access", 1),
            audit_signing_key_file=tmp_path / "key.pem", audit_checkpoint_every=5,
        )
        async with serving(build_app(settings, keys=Keys())) as base_url:
            publisher = KafkaPublisher(kafka_bootstrap, client_id="audit-fuzz")
            await publisher.start()
            try:
                data_key = new_data_key()
                await publisher.publish([registered("alice", n, data_key).to_kafka(topic)
                                         for n in range(1, 13)])
            finally:
                await publisher.stop()
            async with httpx.AsyncClient() as client:

                async def logged() -> bool:
                    answer = await client.get(f"{base_url}/v1/audit/checkpoints/latest")
                    return answer.status_code == 200

                await eventually(logged, 60)
                document = (await client.get(f"{base_url}/openapi.json")).json()
            errors, statuses = await asyncio.to_thread(fuzz, base_url, document, token, 30)

    assert {"/v1/audit/events", "/v1/audit/subjects/{subject_id}/timeline", "/v1/audit/verify",
            "/v1/audit/export", "/v1/audit/checkpoints/latest", "/v1/audit/replays",
            "/v1/audit/replays/{replay_id}"} <= set(document["paths"])
    assert errors == []
    assert statuses[200] > 0 and statuses[422] > 0, statuses
