"""In-memory adapters for fast unit tests.

They keep the same promises as the PostgreSQL and Kafka adapters (the contract
suites in ``eventkit.testing.contracts`` run against both): atomic
transactions, optimistic concurrency per stream, an outbox that holds every
committed event until it is marked published, and a bus that keeps per-key
order.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

from eventkit.envelope import KafkaRecord
from eventkit.store import (
    Clock,
    ConcurrencyError,
    NewEvent,
    RecordedEvent,
    stamp,
    utc_now,
)


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

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        return [
            e for e in self._state.events if e.stream_id == stream_id and e.version > after_version
        ]

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        ordered = sorted(self._state.events, key=lambda e: e.position)
        return [e for e in ordered if e.position > after_position][:limit]

    async def is_processed(self, consumer: str, event_id: UUID) -> bool:
        return (consumer, event_id) in self._state.processed

    # Outbox
    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[None]:
        async with self._leader:
            yield

    async def pending(self, limit: int) -> list[RecordedEvent]:
        by_position = {e.position: e for e in self._state.events}
        return [by_position[p] for p in sorted(self._state.outbox)[:limit]]

    async def mark_published(self, positions: Sequence[int]) -> None:
        done = set(positions)
        self._state.outbox = [p for p in self._state.outbox if p not in done]


class InMemoryBus:
    """Topics of partitions; a record's partition is chosen by its key, as Kafka does."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[list[KafkaRecord]]] = defaultdict(
            lambda: [[] for _ in range(self.partitions)]
        )
        self.changed = asyncio.Condition()

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
