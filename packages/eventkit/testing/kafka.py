"""Reading what really reached a Kafka topic, for tests and benchmarks."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from eventkit.envelope import Envelope


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[Envelope]:
    """Up to ``count`` envelopes from the start of ``topic``, partition by partition as fetched.

    Stops early after ``timeout`` seconds, so a test that expects more sees the shortfall.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    found.extend(Envelope.from_kafka(m.key, m.value, m.headers) for m in messages)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found
