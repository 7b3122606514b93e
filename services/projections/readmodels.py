"""What a read model is, and how one version of it applies events exactly once.

A read model has a name, tables of its own whose names carry the version
(``directory_users_v2``), a projection that applies one event to them, and a
failed-events table. Each version consumes as its own consumer group
(``projections.<name>.v<version>``), so the inbox (``processed_events``) and
the Kafka offsets of one version never mix with another's, and a rebuild
fills the next version from the start of the topics while the current one
serves. ``read_models.active_version`` says which version answers reads.

Events are applied in batches inside the inbox's transaction, with the
partition's checkpoint row: a projection gets the whole batch, in offset
order, so it can write it with a few set-based statements. When a batch fails
the inbox retries it event by event; an event that then fails for a reason in
its data (not the database being away) is recorded in the failed-events table
and skipped, as ZITADEL's projections do, instead of stopping the read model.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from eventkit.consumer import BatchHandler, Delivery
from eventkit.database import Connection
from eventkit.envelope import Envelope
from eventkit.position import position_of_id
from eventkit.postgres_store import PostgresTransaction
from eventkit.registry import EventData, EventRegistry, InvalidEventData, UnknownEventType
from eventkit.store import Transaction

log = structlog.get_logger(__name__)

# pg_notify channel for live updates; the payload names the read model and position.
CHANGES_CHANNEL = "projections_changes"


class Tables:
    """Table names of one version: ``Tables("directory", 3)["users"]`` -> ``directory_users_v3``."""

    def __init__(self, read_model: str, version: int) -> None:
        if version < 1:
            raise ValueError("versions start at 1")
        self.read_model = read_model
        self.version = version

    def __getitem__(self, base: str) -> str:
        # Names come from code, never from a request; quoted anyway.
        return f'"{self.read_model}_{base}_v{self.version}"'


@dataclass(frozen=True, slots=True)
class Change:
    """One event of a batch, decoded: what a projection applies."""

    envelope: Envelope
    event: EventData


# Applies a batch (in offset order; a single event when the inbox goes one by one).
Projection = Callable[[Connection, Tables, Sequence[Change]], Awaitable[None]]
EventProjection = Callable[[Connection, Tables, Envelope, EventData], Awaitable[None]]


def one_by_one(project: EventProjection) -> Projection:
    """A batch projection that runs ``project`` for each event in turn."""

    async def project_all(connection: Connection, tables: Tables, changes: Sequence[Change]
                          ) -> None:
        for change in changes:
            await project(connection, tables, change.envelope, change.event)

    return project_all


@dataclass(frozen=True, slots=True)
class ReadModel:
    """A read model: its tables (SQL with ``{table}`` placeholders) and its projection."""

    name: str
    # CREATE TABLE / INDEX statements; ``{users}`` stands for the versioned table name.
    ddl: str
    tables: tuple[str, ...]
    project: Projection
    # Index names are per version too (PostgreSQL names share one namespace).
    indexes: tuple[str, ...] = ()
    # The event classes the projection acts on; the others are not even decoded. Empty: all.
    follows: tuple[type[EventData], ...] = ()

    def failed_table(self, version: int) -> str:
        return Tables(self.name, version)["failed_events"]

    def create_sql(self, version: int) -> str:
        names = Tables(self.name, version)
        placeholders = {base: names[base] for base in (*self.tables, *self.indexes)}
        return self.ddl.format(**placeholders) + _FAILED.format(
            failed=self.failed_table(version), failed_order=names["failed_events_order"],
        )

    def drop_sql(self, version: int) -> str:
        names = Tables(self.name, version)
        tables = [names[base] for base in self.tables] + [self.failed_table(version)]
        return f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE"


_FAILED = """
CREATE TABLE IF NOT EXISTS {failed} (
    event_id   uuid        PRIMARY KEY,
    event_type text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    error      text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
-- The event itself, as it came (key, data, headers), so it can be applied again;
-- NULL for events set aside before it was kept.
ALTER TABLE {failed} ADD COLUMN IF NOT EXISTS message jsonb;
ALTER TABLE {failed} ADD COLUMN IF NOT EXISTS retries integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {failed_order} ON {failed} (failed_at, event_id);
"""

# Errors that say something about the event, not about the database being reachable.
EVENT_ERRORS: tuple[type[Exception], ...] = (
    InvalidEventData, ValueError, KeyError, TypeError, LookupError,
    asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
)


def group_name(prefix: str, read_model: str, version: int) -> str:
    return f"{prefix}.{read_model}.v{version}"


def connection_of(tx: Transaction) -> Connection:
    if not isinstance(tx, PostgresTransaction):
        raise TypeError("read models live in PostgreSQL")
    return tx.connection


async def prepare(connection: Connection, models: Sequence[ReadModel]) -> dict[str, int]:
    """Register each read model (version 1 the first time), create its active tables."""
    active: dict[str, int] = {}
    for model in models:
        await connection.execute(
            "INSERT INTO read_models (name, active_version) VALUES ($1, 1) "
            "ON CONFLICT (name) DO NOTHING", model.name)
        version = await active_version(connection, model.name)
        await create_version(connection, model, version)
        active[model.name] = version
    return active


async def create_version(connection: Connection, model: ReadModel, version: int) -> None:
    # Serialized: two replicas starting at once must not race on CREATE TABLE.
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('projections.ddl'))")
        await connection.execute(model.create_sql(version))


async def active_version(connection: Connection | asyncpg.Pool[Any], name: str) -> int:
    version = await connection.fetchval(
        "SELECT active_version FROM read_models WHERE name = $1", name)
    if version is None:
        raise LookupError(f"no read model named {name!r}")
    return int(version)


async def last_position(
    connection: Connection | asyncpg.Pool[Any], name: str, version: int
) -> str | None:
    """The position token of the last event this version applied, None before the first."""
    event_id = await connection.fetchval(
        "SELECT last_event_id FROM read_model_checkpoints WHERE name = $1 AND version = $2 "
        "ORDER BY updated_at DESC LIMIT 1", name, version)
    return None if event_id is None else position_of_id(event_id)


def batch_handler(
    model: ReadModel, version: int, registry: EventRegistry,
    *, on_failed: Callable[[], None] = lambda: None,
) -> BatchHandler:
    """The consumer's batch handler for ``version`` of ``model``."""
    tables = Tables(model.name, version)
    failed_table = model.failed_table(version)
    decode = Decoder(registry, model.follows)

    async def apply_batch(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        connection = connection_of(tx)
        if len(deliveries) == 1:
            # The inbox retries a failed batch one event at a time: here an event whose
            # data cannot be applied is set aside, in a savepoint, and the model moves on.
            try:
                # Decoded first: an event the model does not follow needs no savepoint.
                if changes := decode([deliveries[0].envelope]):
                    async with connection.transaction():
                        await model.project(connection, tables, changes)
            except EVENT_ERRORS as error:
                await _record_failure(connection, failed_table, deliveries[0], error)
                on_failed()
        elif changes := decode(delivery.envelope for delivery in deliveries):
            await model.project(connection, tables, changes)
        await _checkpoint(connection, model.name, version, deliveries)

    return apply_batch


class Decoder:
    """The events a read model follows, decoded; the others are left out without parsing."""

    def __init__(self, registry: EventRegistry, follows: Iterable[type[EventData]]) -> None:
        self._registry = registry
        self._follows = frozenset(follows)
        self._followed: dict[str, bool] = {}  # by ce_type

    def __call__(self, envelopes: Iterable[Envelope]) -> list[Change]:
        changes: list[Change] = []
        for envelope in envelopes:
            if self._is_followed(envelope.type):
                changes.append(Change(envelope, self._registry.decode(envelope)))
        return changes

    def _is_followed(self, type_name: str) -> bool:
        followed = self._followed.get(type_name)
        if followed is None:
            try:
                event_class = self._registry.class_for(type_name)
            except UnknownEventType:
                followed = False  # a type this reader does not know (a newer producer)
            else:
                followed = not self._follows or event_class in self._follows
            if len(self._followed) < 1000:  # known types are few; odd ones are not kept
                self._followed[type_name] = followed
        return followed


async def _record_failure(
    connection: Connection, table: str, delivery: Delivery, error: Exception
) -> None:
    message, envelope = delivery.message, delivery.envelope
    log.error("event set aside by read model", table=table, event_id=str(envelope.id),
              type=envelope.type, error=repr(error))
    record = envelope.to_kafka(message.topic)
    kept = {"key": record.key.decode(), "value": record.value.decode(),
            "headers": [[name, value.decode()] for name, value in record.headers]}
    await connection.execute(
        f"INSERT INTO {table} (event_id, event_type, topic, partition, \"offset\", error, "
        "message) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT (event_id) DO NOTHING",
        envelope.id, envelope.type, message.topic, message.partition, message.offset,
        describe(error), json.dumps(kept))


def describe(error: Exception) -> str:
    """What the failed-events table says of an error: its type and message, cut short."""
    return f"{type(error).__name__}: {error}"[:2000]


async def _checkpoint(
    connection: Connection, name: str, version: int, deliveries: Sequence[Delivery]
) -> None:
    last: dict[tuple[str, int], Delivery] = {}
    counts: dict[tuple[str, int], int] = {}
    for delivery in deliveries:
        where = (delivery.message.topic, delivery.message.partition)
        last[where] = delivery
        counts[where] = counts.get(where, 0) + 1
    await connection.executemany(
        "INSERT INTO read_model_checkpoints AS c (name, version, topic, partition, next_offset, "
        "events_applied, last_event_id, last_event_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (name, version, topic, partition) DO UPDATE SET "
        "next_offset = greatest(c.next_offset, excluded.next_offset), "
        "events_applied = c.events_applied + excluded.events_applied, "
        "last_event_id = excluded.last_event_id, last_event_at = excluded.last_event_at, "
        "updated_at = clock_timestamp()",
        [(name, version, topic, partition, d.message.offset + 1, counts[(topic, partition)],
          d.envelope.id, d.envelope.time) for (topic, partition), d in last.items()],
    )
    await notify_change(connection, name, version, applied=len(deliveries),
                        newest=deliveries[-1].envelope)


async def notify_change(
    connection: Connection, name: str, version: int, *, applied: int, newest: Envelope
) -> None:
    """Tell live listeners; delivered when the transaction commits, never if it rolls back."""
    await connection.execute(
        "SELECT pg_notify($1, $2)", CHANGES_CHANNEL,
        json.dumps({"read_model": name, "version": version, "applied": applied,
                    "position": position_of_id(newest.id), "at": newest.time.isoformat()}),
    )
