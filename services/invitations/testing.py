"""For tests and benchmarks: the service as a real app on PostgreSQL and Kafka, with a clock
the caller moves, tokens it accepts, and a reader of what reached Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from asgi_lifespan import LifespanManager

from eventkit.envelope import Envelope, EventType, source_of
from eventkit.registry import EventData
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from schemas.catalog import build_registry
from services.invitations.bootstrap import build_app
from services.invitations.runtime import InvitationsService
from services.invitations.settings import InvitationsSettings

INVITATION_TOPIC = "invitations.invitation"
ACCESS_TOPIC = "invitations.access"


class MovableClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class RunningInvitations:
    client: httpx.AsyncClient
    service: InvitationsService
    clock: MovableClock
    key: SigningKey
    settings: InvitationsSettings
    manager_id: UUID = field(default_factory=uuid4)

    def token(self, subject: UUID | None = None, permissions: list[str] | None = None) -> str:
        return self.key.mint(
            sub=str(subject or self.manager_id),
            permissions=permissions if permissions is not None else ALL_PERMISSIONS,
        )

    def auth(self, subject: UUID | None = None, permissions: list[str] | None = None,
             **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, permissions)}", **headers}


# A platform manager's permissions (schemas.permissions), enough to grant any role.
def _all_permissions() -> list[str]:
    from schemas.permissions import ROLE_PERMISSIONS

    return sorted(ROLE_PERMISSIONS["platform_manager"])


ALL_PERMISSIONS = _all_permissions()


@asynccontextmanager
async def running_invitations(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, **overrides: Any
) -> AsyncIterator[RunningInvitations]:
    await create_topics(kafka_bootstrap, {INVITATION_TOPIC: 3, ACCESS_TOPIC: 3})
    topics = {
        "user_topic": overrides.pop("user_topic", None) or await kafka_topics("identity.user"),
        "delivery_topic": overrides.pop("delivery_topic", None)
        or await kafka_topics("notifications.delivery"),
        "platform_topic": overrides.pop("platform_topic", None)
        or await kafka_topics("identity.platform"),
    }
    key = SigningKey("test-key")
    clock = MovableClock()
    async with serve_jwks(key) as jwks:
        settings = InvitationsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, scheduler_interval=3600, **topics, **overrides,
        )
        app = build_app(settings, clock=clock)
        # Leaving a consumer group mid-rebalance (two replicas) can take a few seconds.
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://invitations",
                                         timeout=30) as client:
                yield RunningInvitations(client, app.state.invitations, clock, key, settings)


async def events_on_kafka(
    bootstrap: str, topic: str, *, until: Callable[[list[dict[str, Any]]], bool],
    within: float = 60.0,
) -> list[dict[str, Any]]:
    """Every record on ``topic`` from the start, as {key, headers, value}, until ``until`` holds."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while not until(seen):
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        seen.append({
                            "key": record.key.decode() if record.key else None,
                            "headers": {k: v.decode() for k, v in record.headers},
                            "value": json.loads(record.value),
                        })
    finally:
        await consumer.stop()
    return seen


async def publish(
    bootstrap: str, topic: str, subject: UUID, event: EventData, *,
    event_id: UUID | None = None, at: datetime | None = None,
) -> UUID:
    """Put one event on ``topic`` as its owning service would; returns its ce_id."""
    event_type: EventType = type(event).event_type
    envelope = Envelope(
        id=event_id or uuid4(), type=str(event_type), subject=str(subject),
        time=at or datetime.now(UTC), actor_id="system", sequence=1,
        data_json=build_registry().encode(event), source=source_of(event_type.service),
    )
    record = envelope.to_kafka(topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(record.topic, record.value, key=record.key,
                                     headers=record.headers)
    finally:
        await producer.stop()
    return envelope.id


def of_type(records: list[dict[str, Any]], name: str, subject: str) -> list[dict[str, Any]]:
    ce_type = f"guestlist.invitations.{name}.v1"
    return [r for r in records if r["headers"]["ce_type"] == ce_type and r["key"] == subject]
