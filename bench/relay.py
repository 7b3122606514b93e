"""Relay throughput: outbox -> Kafka vs a bare aiokafka producer sending the same messages.

Both use the same producer settings (idempotent, acks=all, same linger) and the
same records; the relay also reads the outbox from PostgreSQL and deletes what
Kafka acknowledged, which is the price of never losing an event.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.append import MEMBER_JOINED, PAYLOAD
from eventkit.envelope import KafkaRecord
from eventkit.migrations import apply_migrations
from eventkit.outbox import PostgresOutbox
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from eventkit.relay import OutboxRelay
from eventkit.store import NewEvent
from guestlist.stack.kafka import create_topics

BATCH = 2000


async def fill_outbox(database_url: str, topic: str, events: int) -> list[KafkaRecord]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    store = PostgresEventStore(pool)
    try:
        streams = [uuid4().hex for _ in range(events // 10)]
        for stream_id in streams:
            batch = [
                NewEvent.from_data(MEMBER_JOINED, topic, {**PAYLOAD, "n": n}) for n in range(10)
            ]
            await store.append(stream_id, 0, batch, actor_id="bench")
        return [e.envelope.to_kafka(e.topic) for e in await store.read_all(limit=events)]
    finally:
        await pool.close()


async def relay_rate(database_url: str, bootstrap: str, events: int) -> float:
    publisher = KafkaPublisher(bootstrap)
    outbox = PostgresOutbox(database_url)
    relay = OutboxRelay(outbox, publisher, batch_size=BATCH)
    await publisher.start()
    try:
        async with outbox.leadership():
            started = time.perf_counter()
            await relay.publish_pending()
            elapsed = time.perf_counter() - started
    finally:
        await publisher.stop()
    assert relay.published == events, (relay.published, events)
    return events / elapsed


async def bare_producer_rate(bootstrap: str, records: list[KafkaRecord], topic: str) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        started = time.perf_counter()
        # Same batching as the relay: send a batch, wait for its acknowledgements.
        for first in range(0, len(records), BATCH):
            futures = [
                await producer.send(topic, value=r.value, key=r.key, headers=r.headers)
                for r in records[first : first + BATCH]
            ]
            await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def run(
    database_url: str, bootstrap: str, *, events: int, rounds: int = 3
) -> dict[str, Any]:
    """Median of ``rounds`` runs, the two sides taking turns at going first."""
    await apply_migrations(database_url)
    ours: list[float] = []
    theirs: list[float] = []
    relay_topic = ""
    for round_ in range(rounds):
        suffix = uuid4().hex[:8]
        relay_topic, bare_topic = f"bench.relay-{suffix}", f"bench.bare-{suffix}"
        warm_topic = f"bench.warm-{suffix}"
        await create_topics(bootstrap, {relay_topic: 3, bare_topic: 3, warm_topic: 3})
        records = await fill_outbox(database_url, relay_topic, events)
        # Warm the broker and the partitions' leaders so neither side pays for it.
        await bare_producer_rate(bootstrap, records[:BATCH], warm_topic)
        if round_ % 2:
            theirs.append(await bare_producer_rate(bootstrap, records, bare_topic))
            ours.append(await relay_rate(database_url, bootstrap, events))
        else:
            ours.append(await relay_rate(database_url, bootstrap, events))
            theirs.append(await bare_producer_rate(bootstrap, records, bare_topic))
    return {
        "relay_events_per_s": round(statistics.median(ours), 1),
        "bare_aiokafka_producer_events_per_s": round(statistics.median(theirs), 1),
        "ratio": round(statistics.median(o / t for o, t in zip(ours, theirs, strict=True)), 2),
        "ratio_per_round": [round(o / t, 2) for o, t in zip(ours, theirs, strict=True)],
        "events": events,
        "topic": relay_topic,
    }
