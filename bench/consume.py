"""Consumer throughput: apply-with-inbox vs a bare aiokafka consumer reading the same events.

Both read the same topic from the beginning with a fresh consumer group. The
bare consumer only fetches (a second peer also parses each CloudEvent, to show
what decoding alone costs in Python); the runner parses each CloudEvent, records
its id in the inbox and runs the handler in the same PostgreSQL transaction,
and commits offsets after. Two handlers are measured: one whose effect stays
in memory (the price of the exactly-once machinery itself) and one that
inserts a row per event (a typical read-model write).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer

from eventkit.consumer import ConsumerSettings, kafka_consumer
from eventkit.envelope import Envelope
from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore
from eventkit.store import Transaction


async def bare_consumer_rate(
    bootstrap: str, topic: str, events: int, *, decode: bool = False
) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < events:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for messages in batches.values():
                seen += len(messages)
                if decode:
                    for m in messages:
                        Envelope.from_kafka(m.key, m.value, m.headers)
        await consumer.commit()
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def runner_rate(
    bootstrap: str, topic: str, events: int, pool: asyncpg.Pool[Any], *, write_rows: bool
) -> float:
    counts: Counter[str] = Counter()
    done = asyncio.Event()

    async def handler(envelope: Envelope, tx: Transaction) -> None:
        if write_rows:
            await tx.connection.execute(  # type: ignore[attr-defined]
                "INSERT INTO bench_members (event_id, stream_id) VALUES ($1, $2)",
                envelope.id, envelope.subject,
            )
        counts[envelope.type] += 1
        if counts.total() >= events:
            done.set()

    runner = kafka_consumer(
        bootstrap_servers=bootstrap, group=f"bench-inbox-{uuid4().hex[:8]}",
        store=PostgresEventStore(pool), handler=handler, topics=[topic],
        settings=ConsumerSettings(commit_every=500),
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    started = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - started
    stopping.set()
    await task
    return counts.total() / elapsed


async def run(
    database_url: str, bootstrap: str, *, topic: str, events: int, rounds: int = 3
) -> dict[str, Any]:
    """Median of ``rounds`` runs, the two sides taking turns at going first."""
    await apply_migrations(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    bare: list[float] = []
    inbox: list[float] = []
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_members (event_id uuid, stream_id text)"
        )
        await bare_consumer_rate(bootstrap, topic, events)  # warm the broker's page cache
        for round_ in range(rounds):
            if round_ % 2:
                inbox.append(await runner_rate(bootstrap, topic, events, pool, write_rows=False))
                bare.append(await bare_consumer_rate(bootstrap, topic, events))
            else:
                bare.append(await bare_consumer_rate(bootstrap, topic, events))
                inbox.append(await runner_rate(bootstrap, topic, events, pool, write_rows=False))
        decoding = await bare_consumer_rate(bootstrap, topic, events, decode=True)
        with_rows = await runner_rate(bootstrap, topic, events, pool, write_rows=True)
    finally:
        await pool.close()
    bare_rate, inbox_rate = statistics.median(bare), statistics.median(inbox)
    return {
        "bare_aiokafka_consumer_events_per_s": round(bare_rate, 1),
        "inbox_events_per_s": round(inbox_rate, 1),
        "ratio": round(statistics.median(i / b for i, b in zip(inbox, bare, strict=True)), 2),
        "decoding_consumer_events_per_s": round(decoding, 1),
        "ratio_to_decoding_consumer": round(inbox_rate / decoding, 2),
        "inbox_with_row_insert_events_per_s": round(with_rows, 1),
        "ratio_with_row_insert": round(with_rows / bare_rate, 2),
        "events": events,
    }
