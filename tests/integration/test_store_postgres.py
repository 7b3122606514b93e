"""The store contract on PostgreSQL and a real Kafka broker, and what only PostgreSQL shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from eventkit.envelope import Envelope
from eventkit.migrations import apply_migrations
from eventkit.outbox import PostgresOutbox
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from eventkit.relay import OutboxRelay
from eventkit.testing.kafka import read_topic
from eventkit.testing.store_contract import EventStoreContract, Published, numbers, stream, thing


class PostgresStoreAndOutbox(PostgresEventStore, PostgresOutbox):
    """One object playing both roles, as the in-memory fake does, for the shared suite."""

    def __init__(self, pool: asyncpg.Pool, database_url: str) -> None:
        PostgresEventStore.__init__(self, pool)
        PostgresOutbox.__init__(self, database_url)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await apply_migrations(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool, database_url: str) -> PostgresStoreAndOutbox:
    return PostgresStoreAndOutbox(pool, database_url)


@pytest.fixture
async def topic(kafka_topics) -> str:  # type: ignore[no-untyped-def]
    return str(await kafka_topics("things", partitions=3))


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
    publisher = KafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


@pytest.fixture
def published(kafka_bootstrap: str) -> Published:
    async def read(topic: str, count: int) -> list[Envelope]:
        return await read_topic(kafka_bootstrap, topic, count)

    return read


class TestPostgresEventStore(EventStoreContract):
    pass


@pytest.mark.parametrize("pass_name", ["publish_once", "publish_pending"])
async def test_given_an_earlier_transaction_that_commits_late_then_the_relay_still_publishes_it(
    store: PostgresStoreAndOutbox,
    publisher: KafkaPublisher,
    published: Published,
    topic: str,
    pass_name: str,
) -> None:
    early, late = stream(), stream()
    relay = OutboxRelay(store, publisher)
    relay_pass = getattr(relay, pass_name)
    async with store.transaction() as slow:
        # The slow transaction takes the lower position first, then stalls.
        [held] = await slow.append(early, 0, [thing(1, topic)], actor_id="a")
        [quick] = await store.append(late, 0, [thing(2, topic)], actor_id="a")
        assert quick.position > held.position
        async with store.leadership():
            assert await relay_pass() == 1  # only the committed one is visible
        # A reader tailing max(position) would now stand past the event still to commit.
        async with store.pool.acquire() as conn:
            assert await conn.fetchval("SELECT max(position) FROM events") == quick.position
    async with store.leadership():
        assert await relay_pass() == 1
        assert await store.pending(10) == []
    envelopes = await published(topic, 2)
    assert sorted(numbers(envelopes)) == [1, 2]


async def test_only_one_relay_publishes_at_a_time(
    store: PostgresStoreAndOutbox, database_url: str
) -> None:
    second = PostgresOutbox(database_url, standby_interval=0.05)
    order: list[str] = []

    async def take(outbox: PostgresOutbox, name: str, hold: float) -> None:
        async with outbox.leadership():
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    first = asyncio.create_task(take(store, "first", 0.5))
    await asyncio.sleep(0.2)
    await take(second, "second", 0)
    await first
    assert order == ["first in", "first out", "second in", "second out"]


async def test_commits_that_appended_events_wake_the_relay_instead_of_its_next_poll(
    store: PostgresStoreAndOutbox, publisher: KafkaPublisher, published: Published, topic: str,
) -> None:
    woken: list[str] = []
    store.on_appended(lambda: woken.append("appended"))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.append(stream(), 0, [thing(0, topic)], actor_id="a")
            raise RuntimeError("rolled back")
    async with store.transaction() as tx:
        await tx.record_processed("nothing-appended", uuid4())
    assert woken == []  # neither a rollback nor a commit without events wakes anyone

    relay = OutboxRelay(store, publisher, idle_interval=3600)  # it would never poll again
    store.on_appended(relay.wake)
    stopping = asyncio.Event()
    running = asyncio.create_task(relay.run(stopping))
    try:
        await asyncio.sleep(0.5)  # the relay found nothing and sleeps
        async with store.transaction() as tx:
            await tx.append(stream(), 0, [thing(1, topic)], actor_id="a")
        await store.append(stream(), 0, [thing(2, topic)], actor_id="a")
        # A store with a service's own clock on the same pool wakes the same relay.
        later = store.with_clock(lambda: datetime.now(UTC) + timedelta(days=1))
        await later.append(stream(), 0, [thing(3, topic)], actor_id="a")
        assert woken == ["appended"] * 3
        async with asyncio.timeout(30):
            envelopes = await published(topic, 3)
        assert sorted(numbers(envelopes)) == [1, 2, 3]
    finally:
        stopping.set()
        relay.wake()
        await running
