"""The consumer contract on PostgreSQL and a real Kafka broker, plus pattern subscription and the DLQ tools."""  # noqa: E501

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from uuid import UUID

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from eventkit.consumer import (
    ConsumerRunner,
    ConsumerSettings,
    HandledHook,
    Handler,
    kafka_consumer,
)
from eventkit.dlq import dead_letter_topic, list_dead_letters, redrive_from_kafka
from eventkit.envelope import Envelope, KafkaRecord
from eventkit.kafka_client import ReceivedMessage, list_topics, read_topics
from eventkit.migrations import apply_migrations
from eventkit.postgres_store import PostgresEventStore, PostgresTransaction
from eventkit.publisher import KafkaPublisher
from eventkit.store import Transaction
from eventkit.testing.consumer_contract import (
    FAST,
    ConsumerContract,
    Tally,
    eventually,
    new_group,
    running,
    thing,
)
from guestlist.dlq_cli import dlq_app

pytestmark = pytest.mark.integration

# The harness's kafka_topics fixture: (name, partitions=3) -> the test's own topic name.
Topics = Callable[..., Awaitable[str]]

EFFECTS_TABLE = """
CREATE TABLE contract_effects (
    event_id   uuid        NOT NULL,  -- deliberately not unique: duplicates must be countable
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class PostgresKafkaHarness:
    timeout = 60.0

    def __init__(
        self, pool: asyncpg.Pool, bootstrap: str, topic: str, publisher: KafkaPublisher
    ) -> None:
        self.pool = pool
        self.store = PostgresEventStore(pool)
        self.bootstrap = bootstrap
        self.topic = topic
        self._publisher = publisher

    def runner(
        self,
        group: str,
        handler: Handler,
        *,
        settings: ConsumerSettings = FAST,
        on_handled: HandledHook | None = None,
    ) -> ConsumerRunner:
        return kafka_consumer(
            bootstrap_servers=self.bootstrap,
            group=group,
            store=self.store,
            handler=handler,
            topics=[self.topic],
            settings=settings,
            on_handled=on_handled,
        )

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        await self._publisher.publish(records)

    async def apply_effect(self, envelope: Envelope, tx: Transaction) -> None:
        assert isinstance(tx, PostgresTransaction)
        await tx.connection.execute(
            "INSERT INTO contract_effects (event_id) VALUES ($1)", envelope.id
        )

    async def count_effects(self, event_id: UUID) -> int:
        found = await self.pool.fetchval(
            "SELECT count(*) FROM contract_effects WHERE event_id = $1", event_id
        )
        return int(found)

    async def dead_letters(self, group: str, count: int) -> list[ReceivedMessage]:
        topic = dead_letter_topic(group)
        found: list[ReceivedMessage] = []

        async def enough() -> bool:
            nonlocal found
            if topic in await list_topics(self.bootstrap):
                found = await read_topics(self.bootstrap, [topic])
            return len(found) >= count

        await eventually(enough, self.timeout)
        return found

    async def rebalance(self, group: str, handler: Handler, on_handled: HandledHook) -> None:
        # A second member joins (partitions are revoked and split), then leaves again.
        second = self.runner(group, handler, on_handled=on_handled)
        async with running(second):

            async def joined() -> bool:
                return bool(second.assignment())

            await eventually(joined, self.timeout)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await apply_migrations(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    try:
        await pool.execute(EFFECTS_TABLE)
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
    publisher = KafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


@pytest.fixture
async def consumer_harness(
    pool: asyncpg.Pool, kafka_bootstrap: str, kafka_topics: Topics, publisher: KafkaPublisher
) -> PostgresKafkaHarness:
    topic = await kafka_topics("things", partitions=3)
    return PostgresKafkaHarness(pool, kafka_bootstrap, topic, publisher)


class TestConsumerOnPostgresAndKafka(ConsumerContract):
    pass


async def test_given_a_pattern_subscription_then_every_matching_topic_is_consumed_but_no_dlq(
    consumer_harness: PostgresKafkaHarness, kafka_topics: Topics
) -> None:
    h, tally = consumer_harness, Tally()
    other = await kafka_topics("others", partitions=1)
    prefix = h.topic.split(".", 1)[0]
    group = f"{prefix}.audit"  # its DLQ, <prefix>.audit.dlq, matches the prefix too
    first, second = thing("a", 1), thing("b", 1)
    await h.publish([first.to_kafka(h.topic), second.to_kafka(other)])
    runner = kafka_consumer(
        bootstrap_servers=h.bootstrap,
        group=group,
        store=h.store,
        handler=h.apply_effect,
        pattern=rf"{re.escape(prefix)}\.(?!.*\.dlq$)",
        settings=FAST,
        on_handled=tally,
    )
    async with running(runner):
        await tally.reach(2, h.timeout)
        assert {p.topic for p in runner.assignment()} == {h.topic, other}
    assert [await h.count_effects(e.id) for e in (first, second)] == [1, 1]


async def cli(*args: str) -> Result:
    # The command runs its own event loop, so it gets a thread of its own.
    runner = CliRunner(env={"COLUMNS": "300"})  # wide enough that no cell is folded
    return await asyncio.to_thread(runner.invoke, dlq_app, list(args))


async def test_given_dead_letters_then_they_are_listed_and_redriven_once(
    consumer_harness: PostgresKafkaHarness,
) -> None:
    h, group, tally = consumer_harness, new_group(), Tally()
    broken = True

    async def handler(envelope: Envelope, tx: Transaction) -> None:
        if broken:
            raise RuntimeError("dependency down")
        await h.apply_effect(envelope, tx)

    events = [thing("k1", 1), thing("k2", 1)]
    await h.publish([e.to_kafka(h.topic) for e in events])
    async with running(h.runner(group, handler, on_handled=tally)):
        await tally.reach(2, h.timeout)
        await h.dead_letters(group, 2)

        letters = await list_dead_letters(h.bootstrap, group=group)
        assert sorted(x.event_id or "" for x in letters) == sorted(str(e.id) for e in events)
        assert {(x.group, x.topic, x.redriven) for x in letters} == {(group, h.topic, False)}
        assert all(x.error == "RuntimeError: dependency down" for x in letters)
        everywhere = await list_dead_letters(h.bootstrap)
        assert {x.event_id for x in letters} <= {x.event_id for x in everywhere}

        listed = await cli("list", "--group", group, "--bootstrap", h.bootstrap)
        assert listed.exit_code == 0, listed.output
        assert "dependency down" in listed.output and "waiting" in listed.output

        broken = False
        redriven = await cli("redrive", "--group", group, "--bootstrap", h.bootstrap)
        assert redriven.exit_code == 0, redriven.output
        assert f"redriven 2 event(s) for group {group}" in redriven.output
        await tally.reach(4, h.timeout)

        again = await redrive_from_kafka(h.bootstrap, group=group)
        assert again.redriven == 0
        assert all(x.redriven for x in await list_dead_letters(h.bootstrap, group=group))
    assert [await h.count_effects(e.id) for e in events] == [1, 1]
