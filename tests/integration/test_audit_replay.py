"""Replays on the real Kafka and PostgreSQL: the same events in the same order with
ce_replayid, filters, the rules on target topics, resumption after a stop, and
AuditReplayStarted in the log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from eventkit.envelope import Envelope, KafkaRecord
from eventkit.personal_data import new_data_key
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from eventkit.testing.consumer_contract import eventually
from guestlist.stack.kafka import create_topics
from services.audit import replay
from tests.integration.test_audit_api import Audit, Topics, audit_service, registered

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> AsyncIterator[Audit]:
    async with audit_service(database_url, kafka_bootstrap, kafka_topics, tmp_path) as running:
        yield running


async def target(kafka: str, partitions: int = 1) -> str:
    # Outside the test's prefix: the log must not read it.
    name = f"r{uuid4().hex[:10]}.rebuild.replay"
    await create_topics(kafka, {name: partitions})
    return name


async def received(kafka: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    messages: list[Any] = []
    try:
        async with asyncio.timeout(60):
            while len(messages) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    messages.extend(batch)
        extra = await consumer.getmany(timeout_ms=1000)  # nothing more arrives
        messages.extend(m for batch in extra.values() for m in batch)
    finally:
        await consumer.stop()
    return messages


async def finished(audit: Audit, replay_id: str) -> dict[str, Any]:
    answers: list[dict[str, Any]] = []

    async def done() -> bool:
        answer = await audit.client.get(f"/v1/audit/replays/{replay_id}", headers=audit.auth)
        answers.append(answer.json())
        return bool(answer.json()["status"] != "running")

    await eventually(done, 60)
    return answers[-1]


async def test_a_replay_republishes_the_same_events_in_log_order(audit: Audit) -> None:
    key = new_data_key()
    events = [registered(person, n, key) for n in range(1, 11) for person in ("alice", "bob")]
    events[3] = events[3].with_extensions(origin="x1")
    await audit.publish(events)
    logged = await audit.db.fetch(
        "SELECT sequence, ce_id FROM audit_log WHERE ce_id = ANY($1::uuid[]) ORDER BY sequence",
        [e.id for e in events])
    by_id = {e.id: e for e in events}
    topic = await target(audit.kafka)
    started = await audit.client.post("/v1/audit/replays", headers=audit.auth, json={
        "from": logged[0]["sequence"], "to": logged[-1]["sequence"], "target_topic": topic})
    assert started.status_code == 202, started.text
    replay_id = started.json()["replay_id"]
    progress = await finished(audit, replay_id)
    messages = await received(audit.kafka, topic, len(events))
    only_alice = await audit.client.post("/v1/audit/replays", headers=audit.auth, json={
        "subjects": ["alice"], "types": ["guestlist.identity.UserRegistered.v1"],
        "target_topic": await target(audit.kafka)})
    alice_done = await finished(audit, only_alice.json()["replay_id"])

    assert started.headers["location"] == f"/v1/audit/replays/{replay_id}"
    assert (progress["status"], progress["total"], progress["published"], progress["errors"]) \
        == ("completed", 20, 20, 0)
    replayed = [Envelope.from_kafka(m.key, m.value, m.headers) for m in messages]
    assert [e.id for e in replayed] == [row["ce_id"] for row in logged]
    for message, copy in zip(messages, replayed, strict=True):
        original = by_id[copy.id]
        assert (copy.type, copy.subject, copy.actor_id, copy.sequence, copy.time, copy.source) \
            == (original.type, original.subject, original.actor_id, original.sequence,
                original.time, original.source)
        assert (message.key, message.value) == (original.subject.encode(),
                                                original.data_json.encode())
        assert copy.extensions == {**original.extensions, "replayid": replay_id}
        assert list(message.headers) == [*original.to_kafka(topic).headers,
                                         ("ce_replayid", replay_id.encode())]
    assert (alice_done["status"], alice_done["total"]) == ("completed", 10)

    async def announced() -> bool:
        return bool(await audit.db.fetchval(
            "SELECT count(*) FROM audit_log WHERE ce_type = 'guestlist.audit.AuditReplayStarted.v1'"
        ) == 2)

    await eventually(announced, 60)


async def test_a_replay_is_what_a_rebuild_consumes(audit: Audit) -> None:
    """The contract a read model rebuilt from a replay relies on (docs/DESIGN.md, audit)."""
    key = new_data_key()
    people = ("dora", "emil", "fay", "gus")
    events = [registered(person, n, key) for n in range(1, 9) for person in people]
    await audit.publish(events)
    logged = await audit.db.fetch(
        "SELECT sequence, ce_id FROM audit_log WHERE ce_id = ANY($1::uuid[]) ORDER BY sequence",
        [e.id for e in events])
    topic = await target(audit.kafka, partitions=3)
    started = await audit.client.post("/v1/audit/replays", headers=audit.auth, json={
        "from": logged[0]["sequence"], "to": logged[-1]["sequence"],
        "subjects": list(people), "target_topic": topic})
    progress = await finished(audit, started.json()["replay_id"])
    messages = await received(audit.kafka, topic, len(events))
    announcements: list[str] = []

    async def logged_start() -> bool:
        # AuditReplayStarted goes through the outbox and Kafka into the log.
        announcements.extend(await audit.db.fetchval(
            "SELECT array_agg(data) FROM audit_log WHERE data::jsonb ->> 'replay_id' = $1 "
            "AND ce_type = 'guestlist.audit.AuditReplayStarted.v1'",
            started.json()["replay_id"]) or [])
        return bool(announcements)

    await eventually(logged_start, 60)

    log_order = {row["ce_id"]: row["sequence"] for row in logged}
    by_key: dict[bytes, list[Any]] = {}
    for message in messages:
        by_key.setdefault(message.key, []).append(message)
    # Each aggregate's events: one partition, in their original order, with their headers.
    assert sorted(by_key) == sorted(p.encode() for p in people)
    by_id = {e.id: e for e in events}
    for key_, in_partition in by_key.items():
        assert len({m.partition for m in in_partition}) == 1
        copies = [Envelope.from_kafka(m.key, m.value, m.headers) for m in in_partition]
        assert [by_id[c.id].sequence for c in copies] == list(range(1, 9))
        assert [log_order[c.id] for c in copies] == sorted(log_order[c.id] for c in copies)
        for message, copy in zip(in_partition, copies, strict=True):
            assert list(message.headers) == [
                *by_id[copy.id].to_kafka(topic).headers,
                ("ce_replayid", started.json()["replay_id"].encode())]
            assert message.key == by_id[copy.id].subject.encode() == key_
    assert (progress["status"], progress["total"], progress["published"],
            progress["last_sequence"]) == ("completed", 32, 32, logged[-1]["sequence"])
    assert {k: v for k, v in json.loads(announcements[0]).items() if k != "actor_id"} == {
        "replay_id": started.json()["replay_id"], "target": topic.replace(".", "_"),
        "target_topic": topic, "from_sequence": logged[0]["sequence"],
        "to_sequence": logged[-1]["sequence"], "types": None, "subjects": list(people)}


async def test_bad_replays_are_refused_naming_the_field(audit: Audit) -> None:
    await audit.publish([registered("alice", 1, new_data_key())])
    topic = await target(audit.kafka)
    cases = {
        "domain topic": {"target_topic": "identity.user"},
        "read by the log": {"target_topic": f"{audit.topic}.replay"},
        "missing topic": {"target_topic": f"r{uuid4().hex[:8]}.none.replay"},
        "past the head": {"to": 100000, "target_topic": topic},
        "from after to": {"from": 2, "to": 1, "target_topic": topic},
        "bad type": {"types": ["UserRegistered"], "target_topic": topic},
        "unknown field": {"target": topic},
    }
    answers = {name: await audit.client.post("/v1/audit/replays", json=body, headers=audit.auth)
               for name, body in cases.items()}
    missing = await audit.client.get(f"/v1/audit/replays/{uuid4()}", headers=audit.auth)

    fields = {name: (a.status_code, [e["field"] for e in a.json()["errors"]])
              for name, a in answers.items()}
    assert fields["domain topic"] == (422, ["target_topic"])
    assert fields["read by the log"] == (422, ["target_topic"])
    assert fields["missing topic"] == (422, ["target_topic"])
    assert fields["past the head"] == (422, ["to"])
    assert fields["from after to"] == (422, ["from"])
    assert fields["bad type"] == (422, ["types[0]"])
    assert fields["unknown field"][0] == 422 and "target_topic" in fields["unknown field"][1]
    assert missing.status_code == 404


class StopAfterFirstBatch:
    """Kafka, and a stop once the first batch was acknowledged: a restart mid-replay."""

    def __init__(self, kafka: str, stopping: asyncio.Event) -> None:
        self.publisher = KafkaPublisher(kafka, client_id="replay-test")
        self.stopping = stopping

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        await self.publisher.publish(records)
        self.stopping.set()


async def test_a_stopped_replay_goes_on_from_the_last_published_sequence(
    audit: Audit, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "BATCH", 4)
    events = [registered("carol", n, new_data_key()) for n in range(1, 11)]
    await audit.publish(events)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    topic = await target(audit.kafka)
    first = await audit.db.fetchval(
        "SELECT min(sequence) FROM audit_log WHERE ce_subject = 'carol'")
    started = await replay.start(
        PostgresEventStore(pool), replay.ReplayRequest(topic, first=first, subjects=["carol"]),
        replay_id=uuid4(), actor="operator", actor_id=None, access_topic=audit.access_topic)
    replay_id = UUID(started["replay_id"])
    stopping = asyncio.Event()
    cut = StopAfterFirstBatch(audit.kafka, stopping)
    await cut.publisher.start()
    try:
        halfway = await replay.run(pool, cut, replay_id, stopping=stopping)
        done = await replay.run(pool, cut.publisher, replay_id, stopping=asyncio.Event())
    finally:
        await cut.publisher.stop()
        await pool.close()
    messages = await received(audit.kafka, topic, 10)

    assert halfway is not None and (halfway["status"], halfway["published"]) == ("running", 4)
    assert done is not None and (done["status"], done["published"], done["total"]) == (
        "completed", 10, 10)
    assert [Envelope.from_kafka(m.key, m.value, m.headers).id for m in messages] == [
        e.id for e in events]
