"""Kill the relay between Kafka's acknowledgement and the outbox update, restart it:
every event reaches Kafka, in order per stream; the repeats carry the same ce_id."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore
from eventkit.testing.kafka import read_topic
from eventkit.testing.store_contract import stream, thing

SCRIPT = Path(__file__).parent / "crash" / "relay_process.py"


async def run_relay(database_url: str, bootstrap: str, *flags: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), database_url, bootstrap, *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    if process.returncode not in (0, 86):
        raise AssertionError(stderr.decode()[-2000:])
    return process.returncode


async def test_a_relay_killed_after_the_ack_loses_nothing_and_keeps_stream_order(
    database_url: str, kafka_bootstrap: str, kafka_topics  # type: ignore[no-untyped-def]
) -> None:
    topic = await kafka_topics("crashing-relay")
    await apply_migrations(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    store = PostgresEventStore(pool)
    streams = [stream() for _ in range(5)]
    appended = []
    for round_ in range(10):
        for stream_id in streams:
            appended += await store.append(stream_id, None, [thing(round_, topic)], actor_id="a")

    # Given a relay that dies once Kafka has acknowledged its first batch of 20
    assert await run_relay(database_url, kafka_bootstrap, "--die-after-ack") == 86
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 50  # nothing marked
    # When it is started again
    assert await run_relay(database_url, kafka_bootstrap) == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    await pool.close()

    # Then every event is on the topic, the first batch twice with the same ids
    envelopes = await read_topic(kafka_bootstrap, topic, 70)
    assert len(envelopes) == 70
    assert {e.id for e in envelopes} == {e.envelope.id for e in appended}
    for stream_id in streams:
        sequences = [e.sequence for e in envelopes if e.subject == stream_id]
        first_seen = list(dict.fromkeys(sequences))
        assert first_seen == list(range(1, 11))
