"""Publishing CloudEvents to Kafka with the idempotent producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from eventkit.envelope import KafkaRecord


class Publisher(Protocol):
    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        """Send every record; return once all are acknowledged, raise if any is not."""
        ...


class KafkaPublisher:
    """aiokafka's producer with idempotence and acks=all.

    Records with the same key go to the same partition in send order, and the
    idempotent producer keeps that order through retries.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str = "eventkit", linger_ms: int = 5):
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        acknowledgements = [
            await self._producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
            for r in records
        ]
        await asyncio.gather(*acknowledgements)
