"""In-memory adapters for fast unit tests.

They keep the same promises as the PostgreSQL and Kafka adapters (the contract
suites ``eventkit.testing.store_contract`` and ``consumer_contract`` run
against both): atomic transactions, optimistic concurrency per stream, an
outbox that holds every committed event until it is marked published, and a
bus that keeps per-key order and the committed offsets of consumer groups.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

from eventkit.envelope import KafkaRecord
from eventkit.kafka_client import (
    OutgoingMessage,
    Partition,
    PartitionListener,
    ReceivedMessage,
)
from eventkit.store import (
    Clock,
    ConcurrencyError,
    NewEvent,
    OutgoingEvent,
    RecordedEvent,
    stamp,
    utc_now,
)
from eventkit.telemetry import current_traceparent


@dataclass
class _State:
    events: list[RecordedEvent] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    processed: set[tuple[str, UUID]] = field(default_factory=set)


class InMemoryTransaction:
    """Buffers its writes and applies them to the store only on commit."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self._store = store
        self._events: list[RecordedEvent] = []
        self._processed: set[tuple[str, UUID]] = set()

    def _visible(self) -> list[RecordedEvent]:
        return [*self._store._state.events, *self._events]

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        if not events:
            return []
        # An event remembers the request that caused it, so one trace spans services.
        traceparent = traceparent if traceparent is not None else current_traceparent()
        head = max((e.version for e in self._visible() if e.stream_id == stream_id), default=0)
        if expected_version is not None and head != expected_version:
            raise ConcurrencyError(stream_id, expected_version)
        known_ids = {e.envelope.id for e in self._visible()}
        if any(e.event_id in known_ids for e in events):
            raise ValueError("event id already stored")
        envelopes = stamp(
            stream_id, head + 1, events,
            actor_id=actor_id, traceparent=traceparent, at=self._store.clock(),
        )
        recorded = []
        for event, envelope in zip(events, envelopes, strict=True):
            self._store._next_position += 1
            recorded.append(RecordedEvent(self._store._next_position, event.topic, envelope))
        self._events.extend(recorded)
        return recorded

    async def append_to_log(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        # Transactions already run one at a time here: the end of the stream is ours.
        return await self.append(
            stream_id, None, events, actor_id=actor_id, traceparent=traceparent
        )

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        return [
            e for e in self._visible() if e.stream_id == stream_id and e.version > after_version
        ]

    async def record_processed(self, consumer: str, event_id: UUID) -> bool:
        key = (consumer, event_id)
        if key in self._store._state.processed or key in self._processed:
            return False
        self._processed.add(key)
        return True

    async def record_processed_many(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        return {e for e in event_ids if await self.record_processed(consumer, e)}

    def _commit(self) -> None:
        state = self._store._state
        state.events.extend(self._events)
        state.outbox.extend(e.position for e in self._events)
        state.processed |= self._processed


class InMemoryEventStore:
    """EventStore and Outbox in one object; transactions run one at a time."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self.clock = clock
        self._state = _State()
        self._next_position = 0
        self._lock = asyncio.Lock()
        self._leader = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InMemoryTransaction]:
        async with self._lock:
            tx = InMemoryTransaction(self)
            yield tx
            tx._commit()

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        async with self.transaction() as tx:
            return await tx.append(
                stream_id, expected_version, events, actor_id=actor_id, traceparent=traceparent
            )

    async def append_to_log(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        async with self.transaction() as tx:
            return await tx.append_to_log(
                stream_id, events, actor_id=actor_id, traceparent=traceparent
            )

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        return [
            e for e in self._state.events if e.stream_id == stream_id and e.version > after_version
        ]

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        ordered = sorted(self._state.events, key=lambda e: e.position)
        return [e for e in ordered if e.position > after_position][:limit]

    async def is_processed(self, consumer: str, event_id: UUID) -> bool:
        return (consumer, event_id) in self._state.processed

    async def processed_among(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        return {e for e in event_ids if (consumer, e) in self._state.processed}

    # Outbox
    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[None]:
        async with self._leader:
            yield

    async def pending(self, limit: int, *, after: int = 0) -> list[OutgoingEvent]:
        by_position = {e.position: e for e in self._state.events}
        return [
            OutgoingEvent(p, by_position[p].envelope.to_kafka(by_position[p].topic))
            for p in sorted(self._state.outbox)
            if p > after
        ][:limit]

    async def mark_published(self, positions: Sequence[int]) -> None:
        done = set(positions)
        self._state.outbox = [p for p in self._state.outbox if p not in done]


class InMemoryBus:
    """Topics of partitions; a record's partition is chosen by its key, as Kafka does.

    It is also a broker for consumer groups: ``consumer(group, ...)`` gives a
    member that reads from the group's committed offsets, so stopping one and
    asking for another is a restart that redelivers everything uncommitted.
    One member per group; ``rebalance`` revokes and reassigns its partitions.
    As a ``MessageSink`` it stores a missing key as ``b""`` (partition 0).
    """

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[list[KafkaRecord]]] = defaultdict(
            lambda: [[] for _ in range(self.partitions)]
        )
        self.changed = asyncio.Condition()
        self.committed: dict[str, dict[Partition, int]] = defaultdict(dict)
        self._members: dict[str, InMemoryConsumer] = {}

    def partition_of(self, key: bytes) -> int:
        return zlib.crc32(key) % self.partitions

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        for record in records:
            self.topics[record.topic][self.partition_of(record.key)].append(record)
        async with self.changed:
            self.changed.notify_all()

    def records(self, topic: str) -> list[KafkaRecord]:
        """Every record of a topic, partition by partition."""
        return [r for partition in self.topics[topic] for r in partition]

    def received(self, topic: str) -> list[ReceivedMessage]:
        """Every message of a topic with its offset, partition by partition."""
        return [
            _received(Partition(topic, number), offset, record)
            for number, partition in enumerate(self.topics[topic])
            for offset, record in enumerate(partition)
        ]

    # MessageSink
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ensure_topic(self, topic: str) -> None:
        self.topics[topic]

    async def send(self, message: OutgoingMessage) -> None:
        key = message.key or b""
        partition = self.partition_of(key) if message.partition is None else message.partition
        record = KafkaRecord(message.topic, key, message.value or b"", list(message.headers))
        self.topics[message.topic][partition].append(record)
        async with self.changed:
            self.changed.notify_all()

    # Consumer groups
    def consumer(
        self, group: str, *, topics: Sequence[str] = (), pattern: str | None = None
    ) -> InMemoryConsumer:
        return InMemoryConsumer(self, group, topics=topics, pattern=pattern)

    async def rebalance(self, group: str) -> None:
        """What Kafka does when a member joins or leaves: revoke all, reassign, refetch."""
        member = self._members.get(group)
        if member is not None:
            await member.reassign()


def _received(where: Partition, offset: int, record: KafkaRecord) -> ReceivedMessage:
    return ReceivedMessage(
        where.topic, where.partition, offset, record.key, record.value, tuple(record.headers)
    )


class InMemoryConsumer:
    """A ConsumerClient over an InMemoryBus; positions start at the group's committed offsets."""

    def __init__(
        self, bus: InMemoryBus, group: str, *, topics: Sequence[str], pattern: str | None
    ) -> None:
        if bool(topics) == (pattern is not None):
            raise ValueError("subscribe to a list of topics or to a pattern, not both or neither")
        self._bus = bus
        self._group = group
        self._topics = list(topics)
        self._pattern = re.compile(pattern) if pattern is not None else None
        self._listener: PartitionListener | None = None
        self._positions: dict[Partition, int] = {}

    def _subscribed(self) -> set[Partition]:
        if self._pattern is None:
            names = self._topics
        else:
            # re.match, not fullmatch: aiokafka anchors a pattern at the start only.
            names = [t for t in list(self._bus.topics) if self._pattern.match(t)]
        return {Partition(t, n) for t in names for n in range(len(self._bus.topics[t]))}

    async def _follow_subscription(self) -> None:
        new = self._subscribed() - set(self._positions)
        committed = self._bus.committed[self._group]
        for partition in new:
            self._positions[partition] = committed.get(partition, 0)
        if new and self._listener is not None:
            await self._listener.partitions_assigned(new)

    async def reassign(self) -> None:
        if self._listener is not None:
            await self._listener.partitions_revoked(set(self._positions))
        self._positions.clear()
        await self._follow_subscription()

    async def start(self, listener: PartitionListener) -> None:
        self._listener = listener
        self._bus._members[self._group] = self
        await self._follow_subscription()

    async def stop(self) -> None:
        if self._bus._members.get(self._group) is self:
            del self._bus._members[self._group]
        self._positions.clear()

    def _backlog(self) -> list[tuple[Partition, int]]:
        return [
            (p, offset) for p, offset in sorted(self._positions.items())
            if offset < len(self._bus.topics[p.topic][p.partition])
        ]

    async def poll(self, *, timeout: float, max_records: int) -> list[ReceivedMessage]:
        await self._follow_subscription()
        async with self._bus.changed:
            try:
                await asyncio.wait_for(self._bus.changed.wait_for(self._backlog), timeout)
            except TimeoutError:
                return []
        messages: list[ReceivedMessage] = []
        for partition, offset in self._backlog():
            records = self._bus.topics[partition.topic][partition.partition]
            taken = records[offset : offset + max_records - len(messages)]
            messages.extend(_received(partition, offset + i, r) for i, r in enumerate(taken))
            self._positions[partition] = offset + len(taken)
        return messages

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        for partition, offset in offsets.items():
            if partition not in self._positions:
                raise ValueError(f"{partition} is not assigned to this member")
            self._bus.committed[self._group][partition] = offset

    def assignment(self) -> set[Partition]:
        return set(self._positions)

    def highwater(self, partition: Partition) -> int | None:
        if partition not in self._positions:
            return None
        return len(self._bus.topics[partition.topic][partition.partition])

    async def position(self, partition: Partition) -> int | None:
        return self._positions.get(partition)
