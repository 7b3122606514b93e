"""Both ends crash: the relay dies between Kafka's acknowledgement and its outbox update,
then the consumer dies between its database commit and its offset commit. After both
restart, every event has arrived and none has been applied twice."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from uuid import uuid4

import asyncpg

from eventkit.kafka_client import committed_offsets
from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore
from eventkit.testing.consumer_contract import eventually
from eventkit.testing.store_contract import stream, thing

CRASH = Path(__file__).parent / "crash"
TIMEOUT = 90.0


async def run_script(script: str, *args: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(CRASH / script), *args,
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )


async def test_a_crash_at_each_end_neither_loses_nor_duplicates_an_effect(  # type: ignore[no-untyped-def]
    database_url: str, pg_server, kafka_bootstrap: str, kafka_topics, tmp_path: Path
) -> None:
    topic = await kafka_topics("pipeline")
    producer_db = database_url
    consumer_db = await pg_server.create_database(f"t_{uuid4().hex[:12]}")
    await apply_migrations(producer_db)
    await apply_migrations(consumer_db)

    pool = await asyncpg.create_pool(producer_db, min_size=1, max_size=2)
    store = PostgresEventStore(pool)
    appended = []
    for round_ in range(10):
        for stream_id in [stream() for _ in range(5)]:
            appended += await store.append(stream_id, 0, [thing(round_, topic)], actor_id="a")
    await pool.close()
    event_ids = {e.envelope.id for e in appended}

    log = tmp_path / "pipeline.log"
    relay = await run_script("relay_process.py", producer_db, kafka_bootstrap, "--die-after-ack",
                             log=log)
    assert await asyncio.wait_for(relay.wait(), TIMEOUT) == 86, log.read_text()
    relay = await run_script("relay_process.py", producer_db, kafka_bootstrap, log=log)
    assert await asyncio.wait_for(relay.wait(), TIMEOUT) == 0, log.read_text()
    on_topic = len(event_ids) + 20  # the first batch went out twice

    effects = await asyncpg.connect(consumer_db)
    try:
        await effects.execute("CREATE TABLE crash_effects (event_id uuid NOT NULL)")
        group = f"pipeline-{uuid4().hex[:8]}"
        common = ["--database-url", consumer_db, "--bootstrap", kafka_bootstrap,
                  "--topic", topic, "--group", group, "--commit-every", "5"]
        consumer = await run_script("consume.py", *common, "--crash-after", "15", log=log)
        assert await asyncio.wait_for(consumer.wait(), TIMEOUT) == 17, log.read_text()

        consumer = await run_script("consume.py", *common, log=log)
        try:

            async def everything_committed() -> bool:
                offsets = await committed_offsets(kafka_bootstrap, group)
                return sum(offsets.values()) == on_topic

            await eventually(everything_committed, TIMEOUT)
        finally:
            consumer.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(consumer.wait(), TIMEOUT) == 0, log.read_text()
        rows = await effects.fetch(
            "SELECT event_id, count(*) AS n FROM crash_effects GROUP BY event_id"
        )
    finally:
        await effects.close()
    assert {row["event_id"]: row["n"] for row in rows} == dict.fromkeys(event_ids, 1)
