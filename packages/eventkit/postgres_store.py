"""The event store on PostgreSQL (asyncpg).

Appends are one statement: a guard on the stream head, the insert of the events
and of their outbox rows. Optimistic concurrency rests on the unique
(stream_id, version) index, so concurrent writers to different streams never
wait for each other (no table lock). Writers of one log-like stream (an access
log) take turns on a transaction-scoped advisory lock on its id instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from eventkit.database import Connection
from eventkit.envelope import Envelope, source_of
from eventkit.store import (
    Clock,
    ConcurrencyError,
    NewEvent,
    RecordedEvent,
    stamp,
    utc_now,
)
from eventkit.telemetry import current_traceparent

_APPEND = """
WITH head AS (
    SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1
), inserted AS (
    INSERT INTO events (event_id, stream_id, version, type, topic, source, data,
                        actor_id, traceparent, extensions, recorded_at)
    SELECT e.event_id, $1, head.version + e.n, e.type, e.topic, e.source, e.data::jsonb,
           $8, $9, e.extensions::jsonb, $10
    FROM head, unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $11::text[])
         WITH ORDINALITY AS e(event_id, type, topic, source, data, extensions, n)
    WHERE $2::integer IS NULL OR head.version = $2::integer
    RETURNING position, version
), queued AS (
    INSERT INTO outbox (position) SELECT position FROM inserted
)
SELECT position, version FROM inserted ORDER BY version
"""

_COLUMNS = (
    "position, event_id, stream_id, version, type, topic, source, data::text AS data, "
    "actor_id, traceparent, extensions::text AS extensions, recorded_at"
)

# How often an append "wherever the stream is" retries after losing a race.
_ANY_VERSION_ATTEMPTS = 20
# The class of the two-key advisory locks on log-like streams (a key space of its own, apart
# from the one-key locks of relays and schedulers and from idempotency's class).
_LOG_LOCK_CLASS = 0x4C4F4753  # "LOGS"


def recorded_from_row(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        topic=row["topic"],
        envelope=Envelope(
            id=row["event_id"],
            type=row["type"],
            subject=row["stream_id"],
            time=row["recorded_at"],
            actor_id=row["actor_id"],
            sequence=row["version"],
            data_json=row["data"],
            source=row["source"],
            traceparent=row["traceparent"],
            extensions=json.loads(row["extensions"]) if row["extensions"] != "{}" else {},
        ),
    )


class PostgresTransaction:
    """A unit of work on one connection inside an open transaction."""

    def __init__(self, connection: Connection, clock: Clock) -> None:
        self.connection = connection
        self._clock = clock
        # Whether this unit of work put events in the outbox (the relay is told on commit).
        self.appended = False

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
        self.appended = True
        # An event remembers the request that caused it, so one trace spans services.
        traceparent = traceparent if traceparent is not None else current_traceparent()
        if expected_version is not None:
            return await self._append_once(
                stream_id, expected_version, events, actor_id, traceparent
            )
        for _ in range(_ANY_VERSION_ATTEMPTS):
            try:
                # A savepoint, so losing the race for a version does not abort the caller.
                async with self.connection.transaction():
                    return await self._append_once(stream_id, None, events, actor_id, traceparent)
            except ConcurrencyError:
                continue
        raise ConcurrencyError(stream_id, None)

    async def append_to_log(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        if not events:
            return []
        if not self.connection.is_in_transaction():
            async with self.connection.transaction():
                return await self.append_to_log(
                    stream_id, events, actor_id=actor_id, traceparent=traceparent
                )
        # Transaction-scoped: held through the events' and outbox rows' insert until commit, so
        # the next writer's statement (read committed) sees this version and takes the next.
        await self.connection.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOG_LOCK_CLASS, stream_id
        )
        return await self.append(
            stream_id, None, events, actor_id=actor_id, traceparent=traceparent
        )

    async def _append_once(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        actor_id: str,
        traceparent: str | None,
    ) -> list[RecordedEvent]:
        at = self._clock()
        args: list[Any] = [
            stream_id,
            expected_version,
            [e.event_id for e in events],
            [str(e.type) for e in events],
            [e.topic for e in events],
            [source_of(e.type.service) for e in events],
            [e.data_json for e in events],
            actor_id,
            traceparent,
            at,
            [json.dumps(e.extensions) for e in events],
        ]
        try:
            rows = await self.connection.fetch(_APPEND, *args)
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == "events_stream_version_unique":
                raise ConcurrencyError(stream_id, expected_version) from error
            raise
        if not rows:
            raise ConcurrencyError(stream_id, expected_version)
        envelopes = stamp(
            stream_id, rows[0]["version"], events,
            actor_id=actor_id, traceparent=traceparent, at=at,
        )
        return [
            RecordedEvent(position=row["position"], topic=event.topic, envelope=envelope)
            for row, event, envelope in zip(rows, events, envelopes, strict=True)
        ]

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        rows = await self.connection.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
            stream_id,
            after_version,
        )
        return [recorded_from_row(row) for row in rows]

    async def record_processed(self, consumer: str, event_id: UUID) -> bool:
        status = await self.connection.execute(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            consumer,
            event_id,
        )
        return bool(status == "INSERT 0 1")

    async def record_processed_many(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self.connection.fetch(
            "INSERT INTO processed_events (consumer, event_id) "
            "SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
            consumer,
            list(event_ids),
        )
        return {row["event_id"] for row in rows}


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool[Any], *, clock: Clock = utc_now) -> None:
        self.pool = pool
        self._clock = clock
        self._on_appended: list[Callable[[], None]] = []

    def on_appended(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that put events in the outbox.

        The relay of this process wakes on it instead of waiting for its next
        poll; a relay in another replica still finds the events by polling.
        """
        self._on_appended.append(callback)

    def with_clock(self, clock: Clock) -> PostgresEventStore:
        """The same store stamping events with ``clock``; it wakes the same relay."""
        sibling = PostgresEventStore(self.pool, clock=clock)
        sibling._on_appended = self._on_appended  # shared: callbacks added later reach both
        return sibling

    def _appended(self) -> None:
        for callback in self._on_appended:
            callback()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self.pool.acquire() as connection:
            async with connection.transaction():
                tx = PostgresTransaction(connection, self._clock)
                yield tx
            if tx.appended:  # reached only once the transaction committed
                self._appended()

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        # The append is a single statement, atomic on its own: no BEGIN/COMMIT round trips.
        async with self.pool.acquire() as connection:
            recorded = await PostgresTransaction(connection, self._clock).append(
                stream_id, expected_version, events, actor_id=actor_id, traceparent=traceparent
            )
        if recorded:
            self._appended()
        return recorded

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
        async with self.pool.acquire() as connection:
            return await PostgresTransaction(connection, self._clock).read_stream(
                stream_id, after_version=after_version
            )

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
        return [recorded_from_row(row) for row in rows]

    async def is_processed(self, consumer: str, event_id: UUID) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2",
            consumer,
            event_id,
        )
        return found is not None

    async def processed_among(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self.pool.fetch(
            "SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id = ANY($2)",
            consumer, list(event_ids),
        )
        return {row["event_id"] for row in rows}
