"""Read-model throughput: events/s each read model applies vs a bare aiokafka consumer.

One topic holds a mix of the contract events the read models follow
(registrations, confirmations, role grants, sign-in failures and successes,
invitations created and accepted). Each read model's version-1 consumer reads
it from the beginning into a fresh database (batch handler, inbox and
checkpoint in one transaction per batch); the rate is events over the time
from starting the consumer (group join included) until the last one is
applied, and also after the first one was (start-up left out). The bare
consumer fetches the same messages and does nothing with them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg

from bench.consume import bare_consumer_rate
from eventkit.consumer import Handled
from eventkit.envelope import Envelope, encode_data
from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from eventkit.registry import EventData
from guestlist.stack.kafka import create_topics
from schemas.catalog import build_registry
from schemas.identity import (
    LoginFailed,
    LoginSucceeded,
    RoleGranted,
    UserEmailConfirmed,
    UserRegistered,
)
from schemas.invitations import InvitationAccepted, InvitationCreated
from services.projections import readmodels
from services.projections.bootstrap import MIGRATIONS, read_models
from services.projections.projector import consumer_for
from services.projections.settings import ProjectionsSettings

REGISTRY = build_registry()
SEALED = "pd1:{subject}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def contract_envelope(event: EventData, subject: str, at: datetime) -> Envelope:
    return Envelope(id=uuid4(), type=str(type(event).event_type), subject=subject, time=at,
                    actor_id="system", sequence=1,
                    data_json=encode_data(json.loads(REGISTRY.encode(event))))


def workload(events: int) -> list[Envelope]:
    now = datetime.now(UTC)
    out: list[Envelope] = []
    community = uuid4()
    while len(out) < events:
        user, invitation, inviter = uuid4(), uuid4(), uuid4()
        at = now - timedelta(minutes=len(out))
        sealed = SEALED.format(subject=user)
        out += [
            contract_envelope(InvitationCreated(
                invitation_id=invitation, invitee_email=SEALED.format(subject=invitation),
                inviter_id=inviter, locale="en", valid_from=at, valid_until=at + timedelta(30),
                code_hash="ab" * 32), str(invitation), at),
            contract_envelope(UserRegistered(user_id=user, email=sealed, locale="en",
                                     via_invitation_id=invitation), str(user), at),
            contract_envelope(InvitationAccepted(invitation_id=invitation, user_id=user),
                              str(invitation), at),
            contract_envelope(UserEmailConfirmed(user_id=user), str(user), at),
            contract_envelope(RoleGranted(user_id=user, role="community_member", scope="community",
                                  community_id=community), str(user), at),
            contract_envelope(LoginFailed(user_id=user, failure="wrong_password",
                                  consecutive_failures=1, client_address_hash="cd" * 32),
                      str(user), at),
            contract_envelope(LoginSucceeded(user_id=user, session_id=uuid4(),
                                     expires_at=at + timedelta(hours=1)), str(user), at),
        ]
    return out[:events]


async def publish(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    publisher = KafkaPublisher(bootstrap, client_id="bench-projections")
    await publisher.start()
    try:
        for start in range(0, len(envelopes), 5000):
            await publisher.publish([e.to_kafka(topic) for e in envelopes[start:start + 5000]])
    finally:
        await publisher.stop()


@dataclass(frozen=True, slots=True)
class Rate:
    """How long a consumer took over ``events``, from its start (group join included)."""

    events: int
    seconds: float  # until the last event was applied
    first_seconds: float  # until the first was (joining the group, the first fetch and batch)

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    @property
    def after_first(self) -> float:
        """Events/s once the first was applied: the start-up left out."""
        return self.events / max(self.seconds - self.first_seconds, 1e-9)

    def figures(self) -> dict[str, Any]:
        return {"events_per_s": round(self.per_second),
                "first_event_after_s": round(self.first_seconds, 2),
                "events_per_s_after_first": round(self.after_first)}


class Stopwatch:
    """Started now; ``seen()`` per event; ``rate()`` once all were seen."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.count = 0
        self.done = asyncio.Event()
        self._started = time.perf_counter()
        self._first: float | None = None
        self._last = self._started

    def seen(self) -> None:
        self._last = time.perf_counter()
        if self._first is None:
            self._first = self._last
        self.count += 1
        if self.count >= self.events:
            self.done.set()

    def rate(self) -> Rate:
        first = self._first if self._first is not None else self._last
        return Rate(self.events, self._last - self._started, first - self._started)


async def apply_rate(dsn: str, bootstrap: str, topic: str | Sequence[str], name: str,
                     events: int) -> Rate:
    """The live projector's consumer of read model ``name`` over ``events`` on ``topic``(s)."""
    await apply_migrations(dsn, MIGRATIONS)
    settings = ProjectionsSettings(database_url=dsn, kafka_bootstrap=bootstrap)
    model = {m.name: m for m in read_models(settings)}[name]
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=6)
    try:
        async with pool.acquire() as connection:
            await readmodels.prepare(connection, [model])
        watch = Stopwatch(events)

        async def handled(_: Handled) -> None:  # called once its batch committed
            watch.seen()

        runner = consumer_for(model, 1, bootstrap=bootstrap,
                              group_prefix=f"bench-{uuid4().hex[:8]}",
                              topics=[topic] if isinstance(topic, str) else list(topic),
                              store=PostgresEventStore(pool), registry=REGISTRY,
                              on_handled=handled)
        stopping = asyncio.Event()
        task = asyncio.create_task(runner.run(stopping))
        async with asyncio.timeout(3600):
            await watch.done.wait()
        stopping.set()
        await task
        applied = await pool.fetchval(
            "SELECT coalesce(sum(events_applied), 0) FROM read_model_checkpoints")
        assert applied == events, f"{name} checkpointed {applied} of {events} events"
        return watch.rate()
    finally:
        await pool.close()


async def run(pg: Any, bootstrap: str, *, events: int) -> dict[str, Any]:
    topic = f"bench.projections.{uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 3})
    await publish(bootstrap, topic, workload(events))
    bare = await bare_consumer_rate(bootstrap, topic, events)
    results: dict[str, Any] = {"events": events, "bare_aiokafka_events_per_s": round(bare)}
    for name in ("directory", "invitations", "security"):
        dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
        rate = await apply_rate(dsn, bootstrap, topic, name, events)
        results[name] = {**rate.figures(), "ratio_to_bare": round(rate.per_second / bare, 3)}
    return results
