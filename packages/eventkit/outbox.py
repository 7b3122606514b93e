"""The outbox on PostgreSQL: what committed and still waits for Kafka's acknowledgement.

Rows are taken in append order and deleted only after Kafka acknowledged them.
There is no high-water mark: a transaction that began earlier but committed
later leaves a row that simply shows up in the next pass, so nothing is skipped.
Per aggregate, version n+1 can only commit after version n did (the append
guards on the stream head), so append order is commit order within a stream.

One relay per database publishes: it holds a session-level advisory lock on a
connection of its own and reads the outbox through that same connection, so a
relay that lost its connection (and with it the lock) cannot publish.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
import structlog

from eventkit.envelope import KafkaRecord, binary_headers
from eventkit.store import OutgoingEvent

log = structlog.get_logger(__name__)

# Every attribute comes out as text ready for its header: the relay's hot path
# builds no envelope objects (format_time in eventkit.envelope matches ce_time).
_PENDING = """
SELECT position, topic, stream_id, data::text, event_id::text, source, type,
       to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       actor_id, version::text, traceparent, extensions::text
FROM outbox JOIN events USING (position)
WHERE position > $2
ORDER BY position
LIMIT $1
"""

RELAY_LOCK_NAME = "eventkit.outbox.relay"


class NotLeader(RuntimeError):
    """The outbox was read without holding the relay lock."""


class PostgresOutbox:
    def __init__(
        self, database_url: str, *, standby_interval: float = 1.0, lock_name: str = RELAY_LOCK_NAME
    ) -> None:
        self._database_url = database_url
        self._standby_interval = standby_interval
        self._lock_name = lock_name
        self._connection: asyncpg.Connection | None = None

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[None]:
        connection: asyncpg.Connection = await asyncpg.connect(self._database_url)
        try:
            waited = False
            while not await connection.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", self._lock_name
            ):
                if not waited:
                    log.info("outbox relay on standby: another relay holds the lock")
                    waited = True
                await asyncio.sleep(self._standby_interval)
            log.info("outbox relay is the active publisher")
            self._connection = connection
            yield
        finally:
            self._connection = None
            # Closing the session releases the advisory lock.
            await connection.close()

    def _leader_connection(self) -> asyncpg.Connection:
        if self._connection is None:
            raise NotLeader("outbox read outside leadership()")
        return self._connection

    async def pending(self, limit: int, *, after: int = 0) -> list[OutgoingEvent]:
        rows = await self._leader_connection().fetch(_PENDING, limit, after)
        return [
            OutgoingEvent(
                position,
                KafkaRecord(
                    topic,
                    subject.encode(),
                    data.encode(),
                    binary_headers(
                        id=event_id, source=source, type=type_, subject=subject, time=time,
                        actor_id=actor_id, sequence=sequence, traceparent=traceparent,
                        extensions=json.loads(extensions) if extensions != "{}" else {},
                    ),
                ),
            )
            for (position, topic, subject, data, event_id, source, type_, time, actor_id,
                 sequence, traceparent, extensions) in rows
        ]  # fmt: skip

    async def mark_published(self, positions: Sequence[int]) -> None:
        await self._leader_connection().execute(
            "DELETE FROM outbox WHERE position = ANY($1::bigint[])", list(positions)
        )
