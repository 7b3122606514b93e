"""The harness gives each test real, working servers of its own."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def test_a_database_of_its_own_answers_queries(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE guests (name text PRIMARY KEY)")
        await conn.execute("INSERT INTO guests VALUES ('ada'), ('grace')")
        names = await conn.fetch("SELECT name FROM guests ORDER BY name")
        database = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert [r["name"] for r in names] == ["ada", "grace"]
    assert database.startswith("t_")


async def test_each_test_gets_a_fresh_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    assert tables == 0


async def test_a_message_makes_the_round_trip_through_kafka(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    topic = await kafka_topics("guests", partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, b'{"name": "ada"}', key=b"user-1", headers=[("ce_type", b"guestlist.test.v1")]
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topic}.reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"user-1", b'{"name": "ada"}')
    assert message.headers == (("ce_type", b"guestlist.test.v1"),)


async def test_topics_are_prefixed_per_test_and_created_idempotently(kafka_topics: Any) -> None:
    first = await kafka_topics("identity.user", partitions=3)
    again = await kafka_topics("identity.user", partitions=3)
    other = await kafka_topics("identity.user.dlq", partitions=1)
    assert first == again
    assert first.endswith(".identity.user")
    assert other.split(".")[0] == first.split(".")[0]
