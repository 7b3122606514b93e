"""Events a read model set aside: listed for operators, and applied again once fixed.

The projector records an event it cannot apply (with the message itself) in
the version's failed-events table and moves on. An operator reads the list,
removes the cause (a constraint, a bug fixed by a deploy) and asks for a
retry: the event is applied to the read model and its row deleted in ONE
transaction, with the row locked first, so a retry applies it once however
many are asked for at the same time. It is applied as things stand now,
after the events that followed it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from eventkit.envelope import Envelope
from eventkit.registry import EventRegistry
from services.projections.pages import Page, keyset_page
from services.projections.readmodels import (
    EVENT_ERRORS,
    Decoder,
    ReadModel,
    Tables,
    describe,
    notify_change,
)

SORT = "failed_at"


class FailedEvent(BaseModel):
    event_id: UUID
    event_type: str
    topic: str
    partition: int
    offset: int
    error: str
    failed_at: datetime
    retries: int
    # False for events set aside before the message was kept: those cannot be retried.
    retriable: bool


class RetryOutcome(BaseModel):
    event_id: UUID
    outcome: Literal["applied"]


class EventNotKept(Exception):
    """The row predates keeping the message: there is nothing to apply again."""


class RetryFailed(Exception):
    """Applying the event failed again; its row stays, with this error and one more retry."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


async def table_exists(pool: asyncpg.Pool[Any], model: ReadModel, version: int) -> bool:
    name = model.failed_table(version)
    return await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", name) is True


async def find(
    pool: asyncpg.Pool[Any], model: ReadModel, version: int, *,
    after: dict[str, Any] | None, limit: int,
) -> Page[FailedEvent]:
    """Oldest first, so the event that failed first (and may explain the others) leads."""
    table = model.failed_table(version)

    async def fetch(position: dict[str, Any] | None, count: int) -> list[asyncpg.Record]:
        if position is None:
            return list(await pool.fetch(
                f"SELECT * FROM {table} ORDER BY failed_at, event_id LIMIT $1", count))
        return list(await pool.fetch(
            f"SELECT * FROM {table} WHERE (failed_at, event_id) > ($1::timestamptz, $2::uuid) "
            "ORDER BY failed_at, event_id LIMIT $3",
            datetime.fromisoformat(str(position["key"])), UUID(str(position["id"])), count))

    async def views(rows: list[asyncpg.Record]) -> list[FailedEvent]:
        return [FailedEvent(
            event_id=row["event_id"], event_type=row["event_type"], topic=row["topic"],
            partition=row["partition"], offset=row["offset"], error=row["error"],
            failed_at=row["failed_at"], retries=row["retries"],
            retriable=row["message"] is not None) for row in rows]

    def position_of(row: asyncpg.Record) -> dict[str, Any]:
        return {"sort": SORT, "key": row["failed_at"].isoformat(), "id": str(row["event_id"])}

    return await keyset_page(fetch, views, position_of, after=after, limit=limit)


async def retry(
    pool: asyncpg.Pool[Any], model: ReadModel, version: int, event_id: UUID,
    registry: EventRegistry,
) -> RetryOutcome | None:
    """Apply the event again; None if it is not (or no longer) in the table.

    Raises RetryFailed if it still cannot be applied, EventNotKept if its row has no message.
    """
    table = model.failed_table(version)
    failure: RetryFailed | None = None
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT message FROM {table} WHERE event_id = $1 FOR UPDATE", event_id)
        if row is None:
            return None
        if row["message"] is None:
            raise EventNotKept(str(event_id))
        envelope = _envelope(json.loads(row["message"]))
        try:
            async with connection.transaction():  # a savepoint: a failure keeps the row
                changes = Decoder(registry, model.follows)([envelope])
                if changes:
                    await model.project(connection, Tables(model.name, version), changes)
        except EVENT_ERRORS as error:
            await connection.execute(
                f"UPDATE {table} SET error = $2, retries = retries + 1 WHERE event_id = $1",
                event_id, describe(error))
            failure = RetryFailed(describe(error))
        else:
            await connection.execute(f"DELETE FROM {table} WHERE event_id = $1", event_id)
            await notify_change(connection, model.name, version, applied=1, newest=envelope)
    if failure is not None:  # raised once the new error and count are committed
        raise failure
    return RetryOutcome(event_id=event_id, outcome="applied")


def _envelope(message: dict[str, Any]) -> Envelope:
    return Envelope.from_kafka(message["key"].encode(), message["value"].encode(),
                               [(name, value.encode()) for name, value in message["headers"]])
