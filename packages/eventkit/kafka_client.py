"""The Kafka seam of the consumer runner and the DLQ tools, with aiokafka behind it.

The runner (``eventkit.consumer``) only sees ``ConsumerClient`` and
``MessageSink``; ``eventkit.testing.memory.InMemoryBus`` implements both, so
the same runner logic is tested without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IllegalStateError, TopicAlreadyExistsError, for_code

Headers = tuple[tuple[str, bytes], ...]


class Partition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message as fetched, before anyone tried to parse it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def where(self) -> Partition:
        return Partition(self.topic, self.partition)

    def header(self, name: str) -> str | None:
        for found, raw in self.headers:
            if found == name:
                return raw.decode(errors="replace")
        return None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    # None: let the key choose, as for any other message.
    partition: int | None = None


class PartitionListener(Protocol):
    async def partitions_revoked(self, partitions: set[Partition]) -> None: ...

    async def partitions_assigned(self, partitions: set[Partition]) -> None: ...


class ConsumerClient(Protocol):
    """A group member: fetches from its assigned partitions and commits offsets."""

    async def start(self, listener: PartitionListener) -> None: ...

    async def stop(self) -> None: ...

    async def poll(self, *, timeout: float, max_records: int) -> list[ReceivedMessage]:
        """Messages in offset order within each partition; [] after ``timeout`` seconds."""
        ...

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Store, per partition, the offset of the next message to process."""
        ...

    def assignment(self) -> set[Partition]: ...

    def highwater(self, partition: Partition) -> int | None:
        """Offset the next produced message will get, if known yet."""
        ...

    async def position(self, partition: Partition) -> int | None:
        """Offset of the next message to fetch, if known yet."""
        ...


class MessageSink(Protocol):
    """Where dead letters and redriven messages are written, acknowledged one by one."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topic(self, topic: str) -> None: ...

    async def send(self, message: OutgoingMessage) -> None: ...


def _received(record: Any) -> ReceivedMessage:
    return ReceivedMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


class _RebalanceBridge(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, listener: PartitionListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._listener.partitions_revoked(
            {Partition(tp.topic, tp.partition) for tp in revoked}
        )

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._listener.partitions_assigned(
            {Partition(tp.topic, tp.partition) for tp in assigned}
        )


class KafkaConsumerClient:
    """An aiokafka group member with manual commits, subscribed to topics or a pattern.

    A pattern is matched from the start of a topic name (``re.match``), as
    aiokafka does; new matching topics are found on the next metadata refresh.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        client_id: str = "eventkit-consumer",
        metadata_max_age_ms: int = 30_000,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        if bool(topics) == (pattern is not None):
            raise ValueError("subscribe to a list of topics or to a pattern, not both or neither")
        self._topics = list(topics)
        self._pattern = pattern
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=metadata_max_age_ms,
            max_poll_interval_ms=max_poll_interval_ms,
        )

    async def start(self, listener: PartitionListener) -> None:
        bridge = _RebalanceBridge(listener)
        if self._pattern is not None:
            self._consumer.subscribe(pattern=self._pattern, listener=bridge)
        else:
            self._consumer.subscribe(topics=self._topics, listener=bridge)
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, *, timeout: float, max_records: int) -> list[ReceivedMessage]:
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout * 1000), max_records=max_records
        )
        return [_received(record) for records in batches.values() for record in records]

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        if offsets:
            await self._consumer.commit(
                {TopicPartition(p.topic, p.partition): offset for p, offset in offsets.items()}
            )

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def highwater(self, partition: Partition) -> int | None:
        if partition not in self.assignment():
            return None
        found = self._consumer.highwater(TopicPartition(*partition))
        return int(found) if found is not None else None

    async def position(self, partition: Partition) -> int | None:
        if partition not in self.assignment():
            return None
        try:
            # position() waits while the offset is being reset; a gauge must not.
            return int(
                await asyncio.wait_for(self._consumer.position(TopicPartition(*partition)), 0.2)
            )
        except (TimeoutError, IllegalStateError):
            return None


class KafkaMessageSink:
    """The idempotent producer (acks=all), one acknowledged send at a time."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "eventkit-sink",
        topic_partitions: int = 1,
        replication_factor: int = 1,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic_partitions = topic_partitions
        self._replication_factor = replication_factor
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def ensure_topic(self, topic: str) -> None:
        await ensure_topics(
            self._bootstrap_servers,
            [topic],
            partitions=self._topic_partitions,
            replication_factor=self._replication_factor,
        )

    async def send(self, message: OutgoingMessage) -> None:
        await self._producer.send_and_wait(
            message.topic,
            value=message.value,
            key=message.key,
            headers=list(message.headers),
            partition=message.partition,
        )


async def ensure_topics(
    bootstrap_servers: str, topics: Sequence[str], *, partitions: int, replication_factor: int
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor) for topic in missing]
        )
        for topic, error_code, *_ in response.topic_errors:
            # Another process may have created it between our list and create.
            if error_code and error_code != TopicAlreadyExistsError.errno:
                raise for_code(error_code)(f"cannot create topic {topic}")
        return missing
    finally:
        await admin.close()


async def list_topics(bootstrap_servers: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


async def committed_offsets(bootstrap_servers: str, group_id: str) -> dict[Partition, int]:
    """The offsets a consumer group has committed (the next message it will read)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group_id)
        return {
            Partition(tp.topic, tp.partition): meta.offset
            for tp, meta in found.items()
            if meta.offset >= 0
        }
    finally:
        await admin.close()


async def partition_counts(bootstrap_servers: str, topics: Sequence[str]) -> dict[str, int]:
    """How many partitions each topic has; a missing topic is an error."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    counts: dict[str, int] = {}
    for topic in described:
        if topic["error_code"]:
            raise for_code(topic["error_code"])(f"cannot describe topic {topic['topic']}")
        counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def read_topics(
    bootstrap_servers: str, topics: Sequence[str], *, timeout: float = 30.0
) -> list[ReceivedMessage]:
    """Everything in ``topics`` up to their current end, without a group or commits."""
    if not topics:
        return []
    partitions = [
        TopicPartition(topic, partition)
        for topic, count in (await partition_counts(bootstrap_servers, topics)).items()
        for partition in range(count)
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        messages: list[ReceivedMessage] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = asyncio.get_running_loop().time() + timeout
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"reading {', '.join(topics)} did not reach the end")
            batches = await consumer.getmany(*remaining, timeout_ms=200)
            for tp, records in batches.items():
                messages.extend(_received(r) for r in records if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return messages
    finally:
        await consumer.stop()
