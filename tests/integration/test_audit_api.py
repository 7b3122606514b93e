"""The audit service through HTTP, on the real PostgreSQL and Kafka: checkpoints, queries,
a person's timeline before and after erasure, verification and tampering."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from eventkit.envelope import Envelope
from eventkit.personal_data import encrypt_value, new_data_key
from eventkit.publisher import KafkaPublisher
from eventkit.testing.consumer_contract import eventually
from eventkit.testing.tokens import SigningKey, serve_jwks
from services.audit.bootstrap import build_app
from services.audit.settings import AuditSettings

pytestmark = pytest.mark.integration

Topics = Callable[..., Awaitable[str]]


class Keys:
    """identity's key endpoint, played in memory: erasing a person deletes the key."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def key_for(self, subject_id: str) -> bytes | None:
        return self.keys.get(subject_id)


@dataclass
class Audit:
    client: httpx.AsyncClient
    db: asyncpg.Connection
    token: str
    keys: Keys
    topic: str
    kafka: str
    access_topic: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def publish(self, events: list[Envelope], topic: str | None = None) -> None:
        publisher = KafkaPublisher(self.kafka, client_id="audit-api-test")
        await publisher.start()
        try:
            await publisher.publish([e.to_kafka(topic or self.topic) for e in events])
        finally:
            await publisher.stop()
        ids = [e.id for e in events]

        async def logged() -> bool:
            return bool(await self.db.fetchval(
                "SELECT count(*) FROM audit_log WHERE ce_id = ANY($1::uuid[])", ids) == len(ids))

        await eventually(logged, 60)


@asynccontextmanager
async def audit_service(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path,
    **overrides: object,
) -> AsyncIterator[Audit]:
    topic = await kafka_topics("identity.user")
    prefix = topic.split(".")[0]
    access_topic = await kafka_topics("audit.access", 1)
    signing = SigningKey("k1")
    keys = Keys()
    async with serve_jwks(signing) as jwks:
        settings = AuditSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, audit_consumer_group=f"{prefix}-audit",
            audit_topic_pattern=rf"^{prefix}\.(?!.*\.dlq$)", audit_access_topic=access_topic,
            audit_signing_key_file=tmp_path / "key.pem", audit_checkpoint_every=10,
            **overrides,
        )
        app = build_app(settings, keys=keys)
        token = signing.mint(sub=str(uuid4()), permissions=["view_audit_log", "export_audit_log"])
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            db = await asyncpg.connect(database_url)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
                    yield Audit(client, db, token, keys, topic, kafka_bootstrap, access_topic)
            finally:
                await db.close()


def registered(person: str, n: int, key: bytes) -> Envelope:
    return Envelope(
        id=uuid4(), type="guestlist.identity.UserRegistered.v1", subject=person,
        time=datetime.now(UTC), actor_id=person if n % 2 else "system", sequence=n,
        data_json=json.dumps({"email": encrypt_value(f"{person}@example.org", subject_id=person,
                                                     key=key), "n": n}),
    )


@pytest.fixture
async def audit(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> AsyncIterator[Audit]:
    async with audit_service(database_url, kafka_bootstrap, kafka_topics, tmp_path) as running:
        yield running


async def test_checkpoints_are_signed_every_n_entries_with_the_published_key(audit: Audit) -> None:
    key = new_data_key()
    await audit.publish([registered("alice", n, key) for n in range(1, 26)])
    published = (await audit.client.get("/v1/audit/checkpoints/key")).json()
    latest = (await audit.client.get("/v1/audit/checkpoints/latest")).json()

    assert published["algorithm"] == "Ed25519"
    assert latest["sequence"] == 20  # every 10 entries; 25 arrived
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(published["public_key"]))
    public.verify(base64.b64decode(latest["signature"]), latest["statement"].encode())
    assert json.loads(latest["statement"])["head_hash"] == latest["head_hash"]
    hash_20 = await audit.db.fetchval("SELECT hash FROM audit_log WHERE sequence = 20")
    assert bytes(hash_20).hex() == latest["head_hash"]


async def test_events_are_filtered_paginated_and_each_query_is_logged(audit: Audit) -> None:
    key = new_data_key()
    await audit.publish([registered(person, n, key) for n in range(1, 8)
                         for person in ("alice", "bob")])
    pages, cursor = [], None
    while True:
        params = {"subject": "alice", "limit": "3"} | ({"cursor": cursor} if cursor else {})
        answer = await audit.client.get("/v1/audit/events", params=params, headers=audit.auth)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    by_actor = await audit.client.get("/v1/audit/events", params={"actor": "bob"},
                                      headers=audit.auth)

    assert [len(page) for page in pages] == [3, 3, 1]
    items = [item for page in pages for item in page]
    assert {item["ce_subject"] for item in items} == {"alice"}
    assert [item["sequence"] for item in items] == sorted(item["sequence"] for item in items)
    assert {item["ce_actorid"] for item in by_actor.json()["items"]} == {"bob"}

    async def queries_logged() -> bool:
        return bool(await audit.db.fetchval(
            "SELECT count(*) FROM audit_log WHERE ce_type = 'guestlist.audit.AuditLogQueried.v1'"
        ) == 4)

    await eventually(queries_logged, 60)


async def test_bad_queries_are_refused_naming_the_field(audit: Audit) -> None:
    no_token = await audit.client.get("/v1/audit/events")
    bad_cursor = await audit.client.get("/v1/audit/events", params={"cursor": "nope"},
                                        headers=audit.auth)
    bad_type = await audit.client.get("/v1/audit/events", params={"type": "x"},
                                      headers=audit.auth)
    naive_time = await audit.client.get("/v1/audit/events", params={"since": "2026-01-01T00:00"},
                                        headers=audit.auth)
    assert no_token.status_code == 401
    assert (bad_cursor.status_code, bad_cursor.json()["errors"][0]["field"]) == (422, "cursor")
    assert (bad_type.status_code, bad_type.json()["errors"][0]["field"]) == (422, "type")
    assert (naive_time.status_code, naive_time.json()["errors"][0]["field"]) == (422, "since")


async def test_a_timeline_reveals_personal_data_until_the_person_is_erased(audit: Audit) -> None:
    alice_key = new_data_key()
    audit.keys.keys["alice"] = alice_key
    await audit.publish([registered("alice", n, alice_key) for n in range(1, 4)])
    before = await audit.client.get("/v1/audit/subjects/alice/timeline", headers=audit.auth)
    del audit.keys.keys["alice"]  # identity erased her key
    after = await audit.client.get("/v1/audit/subjects/alice/timeline", headers=audit.auth)
    verified = await audit.client.get("/v1/audit/verify", headers=audit.auth)

    assert [i["data"]["email"] for i in before.json()["items"]] == ["alice@example.org"] * 3
    assert [i["data"]["email"] for i in after.json()["items"]] == ["[erased]"] * 3
    assert [i["data"]["n"] for i in after.json()["items"]] == [1, 2, 3]
    assert verified.json()["ok"] is True


async def test_tampering_is_reported_at_the_edited_sequence(audit: Audit) -> None:
    key = new_data_key()
    await audit.publish([registered("alice", n, key) for n in range(1, 16)])
    intact = (await audit.client.get("/v1/audit/verify", headers=audit.auth)).json()
    # A superuser gets past the trigger and rewrites entry 7.
    await audit.db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    await audit.db.execute(
        "UPDATE audit_log SET data = '{\"email\":\"forged\"}' WHERE sequence = 7")
    await audit.db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    tampered = (await audit.client.get("/v1/audit/verify", headers=audit.auth)).json()
    part = (await audit.client.get("/v1/audit/verify", params={"from": "8", "to": "15"},
                                   headers=audit.auth)).json()
    past_head = await audit.client.get("/v1/audit/verify", params={"to": "100000"},
                                       headers=audit.auth)

    assert intact["ok"] is True and intact["checked"] >= 15
    assert intact["checkpoints_checked"] >= 1
    assert (tampered["ok"], tampered["first_bad_sequence"]) == (False, 7)
    assert tampered["reason"] == "hash does not match the entry's content"
    assert tampered["head"]["sequence"] == intact["head"]["sequence"]
    assert (part["ok"], part["checked"]) == (True, 8)
    assert (past_head.status_code, past_head.json()["errors"][0]["field"]) == (422, "to")
