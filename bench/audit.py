"""Audit log throughput: ingest with hashing vs a bare consumer, verification, export.

- ingest: the audit service's own subscription (batch handler: one INSERT per
  polled batch, SHA-256 chain computed in Python, inbox in the same
  transaction) reading a topic from the beginning, vs a bare aiokafka consumer
  fetching the same events;
- verify: the whole chain recomputed from PostgreSQL, entries/s, in one process
  and as the service does it (split over one process per CPU from
  PARALLEL_MIN entries: run with --events 10000 or more to see the split),
  the best of three runs each;
- export: a full NDJSON export streamed through the server-side cursor, MB/s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from uuid import uuid4

import asyncpg

from bench.consume import bare_consumer_rate
from eventkit.consumer import kafka_consumer
from eventkit.envelope import Envelope
from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore, PostgresTransaction
from eventkit.publisher import KafkaPublisher
from guestlist.stack.kafka import create_topics
from services.audit.bootstrap import MIGRATIONS
from services.audit.checkpoints import CheckpointSigner
from services.audit.consumers import log_subscription
from services.audit.domain import ChainedEntry
from services.audit.export import ExportRequest, ExportResult, plan, stream
from services.audit.settings import AuditSettings
from services.audit.verification import PARALLEL_MIN, verify

VERIFY_RUNS = 3


async def publish(bootstrap: str, topic: str, events: int) -> None:
    publisher = KafkaPublisher(bootstrap, client_id="bench-audit")
    await publisher.start()
    try:
        now = datetime.now(UTC)
        for start in range(0, events, 5000):
            await publisher.publish([
                Envelope(id=uuid4(), type="guestlist.identity.UserProfileUpdated.v1",
                         subject=f"user-{n % 1000}", time=now, actor_id=f"user-{n % 1000}",
                         sequence=n + 1,
                         data_json='{"name":"pd1:user:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",'
                                   f'"n":{n}}}').to_kafka(topic)
                for n in range(start, min(events, start + 5000))
            ])
    finally:
        await publisher.stop()


async def ingest_rate(dsn: str, bootstrap: str, topic: str, events: int) -> float:
    settings = AuditSettings(database_url=dsn, kafka_bootstrap=bootstrap)
    done = asyncio.Event()
    seen = 0

    async def count(tx: PostgresTransaction, appended: Sequence[ChainedEntry]) -> None:
        nonlocal seen
        seen += len(appended)
        if seen >= events:
            done.set()

    subscription = log_subscription(settings, on_appended=count)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=6)
    try:
        runner = kafka_consumer(
            bootstrap_servers=bootstrap, group=f"bench-audit-{uuid4().hex[:8]}",
            store=PostgresEventStore(pool), batch_handler=subscription.batch_handler,
            topics=[topic], settings=subscription.settings,
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(runner.run(stopping))
        started = time.perf_counter()
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        stopping.set()
        await task
        return seen / elapsed
    finally:
        await pool.close()


async def run(admin: Any, bootstrap: str, *, events: int) -> dict[str, Any]:
    dsn = await admin.create_database(f"bench_{uuid4().hex[:8]}")
    await apply_migrations(dsn, MIGRATIONS)
    topic = f"bench-audit-{uuid4().hex[:8]}.identity.user"
    await create_topics(bootstrap, {topic: 3})
    await publish(bootstrap, topic, events)
    await bare_consumer_rate(bootstrap, topic, events)  # warm the broker's page cache
    bare = await bare_consumer_rate(bootstrap, topic, events)
    ingest = await ingest_rate(dsn, bootstrap, topic, events)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    with TemporaryDirectory() as keys:
        signer = CheckpointSigner.from_file(Path(keys) / "key.pem")
        try:
            # One process, then as the service runs it: a process per CPU from PARALLEL_MIN up.
            # The best of VERIFY_RUNS each: the machine is shared, a slow run says little.
            verify_seconds: dict[str, float] = {}
            for _ in range(VERIFY_RUNS):
                for name, processes in (("one_process", 1), ("per_cpu", os.cpu_count() or 1)):
                    started = time.perf_counter()
                    report = await verify(pool, signer.public_key, dsn=dsn, processes=processes)
                    seconds = time.perf_counter() - started
                    verify_seconds[name] = min(seconds, verify_seconds.get(name, seconds))
                    assert report.ok and report.checked == events, report
            request = ExportRequest()
            first, last, checkpoint = await plan(pool, signer, request)
            size = 0
            started = time.perf_counter()
            async for chunk in stream(pool, signer, request, first, last, checkpoint,
                                      ExportResult()):
                size += len(chunk)
            export_seconds = time.perf_counter() - started
        finally:
            await pool.close()
    return {
        "events": events,
        "ingest_events_per_s": round(ingest),
        "bare_consumer_events_per_s": round(bare),
        "ingest_vs_bare": round(ingest / bare, 3),
        "verify_entries_per_s": round(events / min(verify_seconds.values())),
        "verify_entries_per_s_by_mode": {
            name: round(events / seconds) for name, seconds in verify_seconds.items()},
        "verify_split_from_entries": PARALLEL_MIN,
        "export_mb_per_s": round(size / export_seconds / 1e6, 1),
        "export_bytes": size,
    }
