"""The event store port: append with optimistic concurrency, read a stream, read all.

A command handler opens one transaction, appends its events (which also puts
them in the outbox), updates any lookup tables of its own through the same
connection and commits once. A consumer records the id of the event it
processed in the same transaction as its effect. The PostgreSQL adapter is in
``eventkit.postgres_store``; an in-memory one for unit tests is in
``eventkit.testing.memory``. Both pass ``eventkit.testing.store_contract``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from eventkit.envelope import Envelope, EventType, KafkaRecord, encode_data, source_of


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it: reload and decide again."""

    def __init__(self, stream_id: str, expected_version: int | None) -> None:
        super().__init__(f"stream {stream_id!r} is not at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event a handler decided on, before the store gives it a version."""

    type: EventType
    topic: str
    data_json: str
    event_id: UUID = field(default_factory=uuid4)
    extensions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(
        cls, type_: EventType, topic: str, data: dict[str, Any], **extensions: str
    ) -> NewEvent:
        return cls(type=type_, topic=topic, data_json=encode_data(data), extensions=extensions)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its global position, its topic and its wire envelope."""

    position: int
    topic: str
    envelope: Envelope

    @property
    def stream_id(self) -> str:
        return self.envelope.subject

    @property
    def version(self) -> int:
        return self.envelope.sequence


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An outbox entry: where it stands and the Kafka record to send."""

    position: int
    record: KafkaRecord

    @property
    def envelope(self) -> Envelope:
        return Envelope.from_record(self.record)


def utc_now() -> datetime:
    return datetime.now(UTC)


Clock = Callable[[], datetime]


def stamp(
    stream_id: str,
    first_version: int,
    events: Sequence[NewEvent],
    *,
    actor_id: str,
    traceparent: str | None,
    at: datetime,
) -> list[Envelope]:
    """Give each new event its envelope; shared by every adapter so they agree."""
    return [
        Envelope(
            id=event.event_id,
            type=str(event.type),
            subject=stream_id,
            time=at,
            actor_id=actor_id,
            sequence=first_version + offset,
            data_json=event.data_json,
            source=source_of(event.type.service),
            traceparent=traceparent,
            extensions=event.extensions,
        )
        for offset, event in enumerate(events)
    ]


class Transaction(Protocol):
    """One atomic unit of work against the store."""

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        """Append after ``expected_version`` (0: a new stream; None: wherever it is)."""
        ...

    async def append_to_log(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        """Append at the end of a log-like stream, after the writers before on it commit.

        For streams whose order means nothing to the domain (an access log): concurrent
        writers take turns instead of racing for one version. Every writer of such a stream
        appends through here.
        """
        ...

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        ...

    async def record_processed(self, consumer: str, event_id: UUID) -> bool:
        """Remember that ``consumer`` handled ``event_id``; False if it already had."""
        ...

    async def record_processed_many(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        """Remember a batch at once; return the ids that were new to ``consumer``."""
        ...


class EventStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        ...

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        ...

    async def append_to_log(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        """``Transaction.append_to_log`` in a transaction of its own."""
        ...

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        ...

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events by global position. Positions can commit out of order: do not tail this."""
        ...

    async def is_processed(self, consumer: str, event_id: UUID) -> bool:
        ...

    async def processed_among(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``event_ids`` ``consumer`` has processed: many waiters, one question."""
        ...


class Outbox(Protocol):
    """The events committed but not yet acknowledged by Kafka."""

    def leadership(self) -> AbstractAsyncContextManager[None]:
        """Held while this relay is the only one publishing for the service."""
        ...

    async def pending(self, limit: int, *, after: int = 0) -> list[OutgoingEvent]:
        """Committed, unpublished events in append order, from past position ``after``.

        ``after`` only lets a relay read ahead while a batch is in flight; every
        pass of the relay starts again from 0, so a row that committed late
        below ``after`` is published by the next pass, never skipped.
        """
        ...

    async def mark_published(self, positions: Sequence[int]) -> None:
        ...
