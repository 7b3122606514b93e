"""Append throughput: eventkit's PostgreSQL store vs the eventsourcing library's recorder.

Both write one event per transaction to a fresh stream, on the same server, with
the same number of concurrent writers. eventsourcing's application recorder
takes an EXCLUSIVE table lock per insert (it needs gapless notification ids in
commit order), so its writers queue; eventkit's appends only meet on the unique
(stream_id, version) index, and the outbox keeps the no-skip guarantee.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg

from eventkit.envelope import EventType
from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore
from eventkit.store import NewEvent

MEMBER_JOINED = EventType("bench", "MemberJoined", 1)
PAYLOAD = {"email_hash": "9f" * 32, "name": "x" * 40, "roles": ["community_member"], "n": 0}


async def eventkit_rate(database_url: str, writers: int, events: int) -> float:
    pool = await asyncpg.create_pool(database_url, min_size=writers, max_size=writers)
    store = PostgresEventStore(pool)
    per_writer = events // writers

    async def writer() -> None:
        for n in range(per_writer):
            event = NewEvent.from_data(MEMBER_JOINED, "bench.members", {**PAYLOAD, "n": n})
            await store.append(uuid4().hex, 0, [event], actor_id="bench")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return per_writer * writers / (time.perf_counter() - started)
    finally:
        await pool.close()


def eventsourcing_rate(database_url: str, writers: int, events: int) -> float:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    url = urlsplit(database_url)
    datastore = PostgresDatastore(
        dbname=url.path.lstrip("/"), host=url.hostname or "127.0.0.1", port=url.port or 5432,
        user=url.username or "", password=url.password or "", pool_size=writers,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    per_writer = events // writers

    def writer() -> None:
        for n in range(per_writer):
            state = json.dumps({**PAYLOAD, "n": n}).encode()
            recorder.insert_events(
                [StoredEvent(uuid4(), 1, "bench:MemberJoined", state)]
            )

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    try:
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return per_writer * writers / (time.perf_counter() - started)
    finally:
        datastore.close()


async def run(database_url: str, *, events: int, rounds: int = 3) -> dict[str, Any]:
    """Median of ``rounds`` runs per writer count, the two sides taking turns at going first."""
    await apply_migrations(database_url)
    results: dict[str, Any] = {}
    for writers in (1, 16):
        # Warm both paths (connections, plans) before measuring.
        await eventkit_rate(database_url, writers, writers * 20)
        await asyncio.to_thread(eventsourcing_rate, database_url, writers, writers * 20)
        ours: list[float] = []
        theirs: list[float] = []
        for round_ in range(rounds):
            if round_ % 2:
                theirs.append(
                    await asyncio.to_thread(eventsourcing_rate, database_url, writers, events)
                )
                ours.append(await eventkit_rate(database_url, writers, events))
            else:
                ours.append(await eventkit_rate(database_url, writers, events))
                theirs.append(
                    await asyncio.to_thread(eventsourcing_rate, database_url, writers, events)
                )
        results[f"writers_{writers}"] = {
            "eventkit_events_per_s": round(statistics.median(ours), 1),
            "eventsourcing_events_per_s": round(statistics.median(theirs), 1),
            "ratio": round(
                statistics.median(o / t for o, t in zip(ours, theirs, strict=True)), 2
            ),
        }
    results["events_per_run"] = events
    results["rounds"] = rounds
    results["cpu_count"] = os.cpu_count()
    return results
