"""Rebuilding read models over a long history: ``events`` contract events, then each rebuild.

The history is produced straight onto the four domain topics (3 partitions
each), not through the services: seven event kinds per person (invitation
created, registered, invitation accepted, e-mail confirmed, role granted, a
failed and a successful sign-in) are encoded once as CloudEvents and copied
with fresh ids, then sent in aiokafka batches built per partition (the
default partitioner on the subject key, as the services' producers place them). Each read model
is then rebuilt by ``services.projections.rebuild.rebuild`` — its next
version from the earliest offsets to the ends, then the switch — into a fresh
database, one after the other; the figure is the time from the call until it
returned, and events over that time.

Its peer, run on the same history in the same process: the live projector's
path, ``services.projections.projector.consumer_for`` on version 1 of the
same read model in another fresh database, from the first offsets until it
handled every event (no begin, no progress, no switch). Both denominators are
the events the read model consumed, which is the whole history (every read
model reads all four topics); ``followed`` says how many of them are of a type
it acts on, the others are only recorded as processed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench.projections import apply_rate
from eventkit.envelope import Envelope, KafkaRecord, encode_data
from eventkit.migrations import apply_migrations
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
from services.projections.bootstrap import MIGRATIONS, read_models
from services.projections.rebuild import rebuild
from services.projections.settings import ProjectionsSettings

REGISTRY = build_registry()
PARTITIONS = 3
# Stand-ins replaced in every copy (the text of each UUID is unique in the templates).
USER, INVITATION, INVITER, SESSION = (UUID(int=n) for n in (0xA1, 0xA2, 0xA3, 0xA4))
EVENT_IDS = [UUID(int=0xB0 + n) for n in range(7)]


def _template(n: int, event: EventData, subject: UUID, at: datetime, topic: str) -> KafkaRecord:
    return Envelope(id=EVENT_IDS[n], type=str(type(event).event_type), subject=str(subject),
                    time=at, actor_id="system", sequence=1,
                    data_json=encode_data(json.loads(REGISTRY.encode(event)))).to_kafka(topic)


def templates(topics: dict[str, str]) -> list[KafkaRecord]:
    at = datetime.now(UTC) - timedelta(days=1)
    sealed = f"pd1:{USER}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    community = uuid4()
    events: list[tuple[EventData, UUID]] = [
        (InvitationCreated(invitation_id=INVITATION, invitee_email=sealed, inviter_id=INVITER,
                           locale="en", valid_from=at, valid_until=at + timedelta(days=30),
                           code_hash="ab" * 32), INVITATION),
        (UserRegistered(user_id=USER, email=sealed, locale="en", via_invitation_id=INVITATION),
         USER),
        (InvitationAccepted(invitation_id=INVITATION, user_id=USER), INVITATION),
        (UserEmailConfirmed(user_id=USER), USER),
        (RoleGranted(user_id=USER, role="community_member", scope="community",
                     community_id=community), USER),
        (LoginFailed(user_id=USER, failure="wrong_password", consecutive_failures=1,
                     client_address_hash="cd" * 32), USER),
        (LoginSucceeded(user_id=USER, session_id=SESSION, expires_at=at + timedelta(hours=1)),
         USER),
    ]
    return [_template(n, event, subject, at, topics[REGISTRY.topic_of(str(type(event).event_type))])
            for n, (event, subject) in enumerate(events)]


class _Copier:
    """Copies of one template with fresh ids: only the parts holding a stand-in change."""

    def __init__(self, record: KafkaRecord) -> None:
        self.record = record
        stand_ins = [str(u).encode() for u in (USER, INVITATION, INVITER, SESSION, *EVENT_IDS)]
        self._in_key = [s for s in stand_ins if s in record.key]
        self._in_value = [s for s in stand_ins if s in record.value]
        self._in_headers = [(n, [s for s in stand_ins if s in value])
                            for n, (_, value) in enumerate(record.headers)]

    def copy(self, fresh: dict[bytes, bytes]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        def swap(raw: bytes, present: list[bytes]) -> bytes:
            for old in present:
                raw = raw.replace(old, fresh[old])
            return raw

        headers = [(name, swap(value, self._in_headers[n][1]) if self._in_headers[n][1] else value)
                   for n, (name, value) in enumerate(self.record.headers)]
        return swap(self.record.key, self._in_key), swap(self.record.value, self._in_value), \
            headers


async def produce(bootstrap: str, topics: dict[str, str], events: int) -> float:
    """``events`` events onto ``topics`` (partitioned by key as a producer would); events/s."""
    copiers = [_Copier(record) for record in templates(topics)]
    stand_ins = [str(u).encode() for u in (USER, INVITATION, INVITER, SESSION, *EVENT_IDS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1,
                                max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    partitions = list(range(PARTITIONS))
    started = time.perf_counter()
    try:
        batches: dict[tuple[str, int], Any] = {}
        in_flight: list[asyncio.Future[Any]] = []
        sent = 0
        while sent < events:
            fresh = {old: str(uuid4()).encode() for old in stand_ins}
            for copier in copiers[:events - sent]:
                key, value, headers = copier.copy(fresh)
                where = (copier.record.topic, DefaultPartitioner()(key, partitions, partitions))
                batch = batches.get(where) or batches.setdefault(where, producer.create_batch())
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    in_flight.append(await producer.send_batch(batch, where[0],
                                                               partition=where[1]))
                    batches[where] = batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
                sent += 1
            if len(in_flight) >= 32:
                await asyncio.gather(*in_flight)
                in_flight.clear()
                print(f"\rrebuild: produced {sent:,} of {events:,}", end="", file=sys.stderr)
        for (topic, partition), batch in batches.items():
            in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*in_flight)
        print(file=sys.stderr)
    finally:
        await producer.stop()
    return events / (time.perf_counter() - started)


async def rebuild_time(pg: Any, bootstrap: str, topics: dict[str, str], name: str,
                       events: int) -> dict[str, Any]:
    dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    await apply_migrations(dsn, MIGRATIONS)
    settings = ProjectionsSettings(database_url=dsn, kafka_bootstrap=bootstrap)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=6)
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - shown[0] >= 5:
            shown[0] = time.perf_counter()
            print(f"rebuild {name}: {done:,} of {total:,}", file=sys.stderr)

    try:
        started = time.perf_counter()
        version = await rebuild(
            pool=pool, bootstrap=bootstrap, models={m.name: m for m in read_models(settings)},
            name=name, topics=list(topics.values()), group_prefix=f"bench-{uuid4().hex[:8]}",
            registry=REGISTRY, on_progress=progress)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return {"version": version, "seconds": round(elapsed, 1),
            "events_per_s": round(events / elapsed)}


async def live_time(pg: Any, bootstrap: str, topics: dict[str, str], name: str,
                    events: int) -> dict[str, Any]:
    """The live projector's consumer over the same history: seconds and events/s."""
    dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    rate = await apply_rate(dsn, bootstrap, list(topics.values()), name, events)
    return {"seconds": round(rate.seconds, 1), "events_per_s": round(rate.per_second)}


# The kinds in the order ``templates`` makes them, repeated by ``produce``.
KINDS = (InvitationCreated, UserRegistered, InvitationAccepted, UserEmailConfirmed, RoleGranted,
         LoginFailed, LoginSucceeded)


def followed(pg_dsn: str, bootstrap: str, name: str, events: int) -> int:
    """Events of the history of a type ``name`` acts on."""
    settings = ProjectionsSettings(database_url=pg_dsn, kafka_bootstrap=bootstrap)
    model = {m.name: m for m in read_models(settings)}[name]
    acts = [not model.follows or kind in model.follows for kind in KINDS]
    return sum(1 for n in range(events) if acts[n % len(KINDS)])


async def run(pg: Any, bootstrap: str, *, events: int = 1_000_000) -> dict[str, Any]:
    prefix = f"benchrebuild{uuid4().hex[:6]}"
    topics = {name: f"{prefix}.{name}" for name in
              ("identity.user", "identity.platform", "invitations.invitation",
               "notifications.delivery")}
    await create_topics(bootstrap, {topic: PARTITIONS for topic in topics.values()})
    produced = await produce(bootstrap, topics, events)
    results: dict[str, Any] = {"events": events, "produced_events_per_s": round(produced)}
    total = 0.0
    for name in ("directory", "invitations", "security"):
        print(f"rebuild: {name} over {events:,} events…", file=sys.stderr)
        built = await rebuild_time(pg, bootstrap, topics, name, events)
        print(f"rebuild: {name}, the live projector's path over the same events…",
              file=sys.stderr)
        live = await live_time(pg, bootstrap, topics, name, events)
        results[name] = {"consumed": events,
                         "followed": followed(pg.dsn(), bootstrap, name, events),
                         "rebuild": built, "live": live,
                         "rebuild_to_live": round(built["events_per_s"] / live["events_per_s"],
                                                  2)}
        total += built["seconds"]
    results["all_seconds"] = round(total, 1)
    return results
