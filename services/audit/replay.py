"""Replays: the log's events published again, in log order, to a topic of the caller's choice.

Each replayed message is the original CloudEvent as the log holds it — same
``ce_id`` and attributes, key (the subject) and data text — plus the extension
``ce_replayid``. Progress lives in ``audit_replays``: after each batch Kafka
acknowledged, ``last_sequence`` moves, so a replay cut off by a restart goes
on from there (the batch in flight may be published twice; readers
deduplicate by ``ce_id`` as they do for any redelivery). One process runs a
given replay at a time: it holds an advisory lock on the replay's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient

from eventkit.envelope import Envelope, KafkaRecord
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher, Publisher
from eventkit.store import NewEvent, utc_now
from schemas.access import AuditReplayStarted
from services.audit import log as audit_log
from services.audit.verification import RangeError

log = structlog.get_logger(__name__)

BATCH = 1000
ATTEMPTS = 5
# Replays go to topics named for what they feed, ending in ".replay"
# (projections.users.replay): never a domain topic, whose consumers would take
# the old events for new ones, and never a dead-letter topic.
TARGET_TOPIC = r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*\.replay$"
_TARGET = re.compile(TARGET_TOPIC)


class TargetError(ValueError):
    """The target topic breaks the replay rules."""


def check_target(topic: str, *, log_pattern: str) -> None:
    """Refuse a topic the rules forbid, or one the log itself reads (it would log its replays)."""
    if len(topic) > 200 or not _TARGET.fullmatch(topic):
        raise TargetError("target_topic must be lower-case words joined by dots, ending in "
                          "'.replay' (e.g. projections.users.replay)")
    if re.match(log_pattern, topic):
        raise TargetError("target_topic is read by the audit log itself (AUDIT_TOPIC_PATTERN)")


def target_identifier(topic: str) -> str:
    """The topic as AuditReplayStarted's ``target`` (an identifier: no dots)."""
    return re.sub(r"[^a-z0-9_]", "_", topic)[:100]


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    target_topic: str
    first: int | None = None
    last: int | None = None
    types: Sequence[str] | None = None
    subjects: Sequence[str] | None = None


_COLUMNS = ("replay_id, requested_by, requested_at, from_sequence, to_sequence, types, "
            "subjects, target_topic, status, total, published, last_sequence, errors, "
            "last_error, updated_at")
_MATCHING = ("FROM audit_log WHERE sequence > $1 AND sequence <= $2 "
             "AND ($3::text[] IS NULL OR ce_type = ANY($3)) "
             "AND ($4::text[] IS NULL OR ce_subject = ANY($4))")


def replay_json(row: asyncpg.Record | Any) -> dict[str, Any]:
    return {
        "replay_id": str(row["replay_id"]), "status": row["status"],
        "from": row["from_sequence"], "to": row["to_sequence"], "types": row["types"],
        "subjects": row["subjects"], "target_topic": row["target_topic"],
        "total": row["total"], "published": row["published"],
        "last_sequence": row["last_sequence"], "errors": row["errors"],
        "last_error": row["last_error"], "requested_by": row["requested_by"],
        "requested_at": row["requested_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def start(
    store: PostgresEventStore, request: ReplayRequest, *, replay_id: UUID, actor: str,
    actor_id: UUID | None, access_topic: str,
) -> dict[str, Any]:
    """Record the replay and its AuditReplayStarted in one transaction; the row as JSON."""
    head, _ = await audit_log.head(store.pool)
    first = request.first or 1
    last = head if request.last is None else request.last
    if head == 0:
        raise RangeError("to", "the log is empty")
    if last > head:
        raise RangeError("to", f"to is past the head of the log ({head})")
    if first > last:
        raise RangeError("from", "from must not be after to")
    types = list(request.types) if request.types else None
    subjects = list(request.subjects) if request.subjects else None
    event = AuditReplayStarted(actor_id=actor_id, replay_id=replay_id,
                               target=target_identifier(request.target_topic),
                               target_topic=request.target_topic, from_sequence=first,
                               to_sequence=last, types=types, subjects=subjects)
    async with store.transaction() as tx:
        total = await tx.connection.fetchval(
            f"SELECT count(*) {_MATCHING}", first - 1, last, types, subjects)
        row = await tx.connection.fetchrow(
            f"INSERT INTO audit_replays ({_COLUMNS}) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, 0, $10, 0, NULL, $3) "
            f"RETURNING {_COLUMNS}",
            replay_id, actor, utc_now(), first, last, types, subjects, request.target_topic,
            total, first - 1,
        )
        await tx.append(f"audit-replay-{replay_id}", None, [NewEvent(
            type=event.event_type, topic=access_topic,
            data_json=json.dumps(event.model_dump(mode="json"), separators=(",", ":"),
                                 sort_keys=True))], actor_id=actor)
    return replay_json(row)


async def find(pool: asyncpg.Pool[Any], replay_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM audit_replays WHERE replay_id = $1",
                              replay_id)
    return replay_json(row) if row is not None else None


def record_of(row: asyncpg.Record | Any, *, replay_id: UUID, topic: str) -> KafkaRecord:
    """The logged event as it was on the wire, with ``ce_replayid``."""
    extensions = json.loads(row["ce_extensions"])
    extensions["replayid"] = str(replay_id)
    return Envelope(
        id=row["ce_id"], type=row["ce_type"], subject=row["ce_subject"], time=row["ce_time"],
        actor_id=row["ce_actorid"], sequence=row["ce_sequence"], data_json=row["data"],
        source=row["ce_source"], traceparent=row["ce_traceparent"], extensions=extensions,
    ).to_kafka(topic)


async def run(
    pool: asyncpg.Pool[Any], publisher: Publisher, replay_id: UUID, *,
    stopping: asyncio.Event, retry_delay: float = 1.0,
) -> dict[str, Any] | None:
    """Publish what is left of the replay; return its row, or None if another process runs it."""
    async with pool.acquire() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext('audit.replay'), "
                                   "hashtext($1))", str(replay_id)):
            return None
        try:
            await _publish_rest(pool, publisher, replay_id, stopping=stopping,
                                retry_delay=retry_delay)
        finally:
            try:
                await lock.fetchval("SELECT pg_advisory_unlock(hashtext('audit.replay'), "
                                    "hashtext($1))", str(replay_id))
            except BaseException:
                # Closing the session frees its lock; the pool replaces the connection.
                lock.terminate()
                raise
    return await find(pool, replay_id)


async def _publish_rest(
    pool: asyncpg.Pool[Any], publisher: Publisher, replay_id: UUID, *,
    stopping: asyncio.Event, retry_delay: float,
) -> None:
    replay = await pool.fetchrow(f"SELECT {_COLUMNS} FROM audit_replays WHERE replay_id = $1",
                                 replay_id)
    if replay is None or replay["status"] != "running":
        return
    after, failures = replay["last_sequence"], 0
    while not stopping.is_set():
        rows = await pool.fetch(
            "SELECT sequence, ce_id, ce_source, ce_type, ce_subject, ce_time, ce_actorid, "
            "ce_sequence, ce_traceparent, ce_extensions::text AS ce_extensions, data "
            f"{_MATCHING} ORDER BY sequence LIMIT {BATCH}",
            after, replay["to_sequence"], replay["types"], replay["subjects"],
        )
        if not rows:
            # Every matching entry up to `to` is out: last_sequence says so to the reader.
            await pool.execute("UPDATE audit_replays SET status = 'completed', updated_at = $2, "
                               "last_sequence = to_sequence WHERE replay_id = $1",
                               replay_id, utc_now())
            return
        try:
            await publisher.publish([record_of(row, replay_id=replay_id,
                                               topic=replay["target_topic"]) for row in rows])
        except Exception as error:  # Kafka errors of any kind: counted, retried, then failed
            failures += 1
            give_up = failures >= ATTEMPTS
            await pool.execute(
                "UPDATE audit_replays SET errors = errors + 1, last_error = $2, updated_at = $3, "
                "status = CASE WHEN $4 THEN 'failed' ELSE status END WHERE replay_id = $1",
                replay_id, f"{type(error).__name__}: {error}"[:2000], utc_now(), give_up)
            log.warning("replay batch not published", replay_id=str(replay_id),
                        error=repr(error), giving_up=give_up)
            if give_up:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=retry_delay * 2 ** failures)
            continue
        failures = 0
        after = rows[-1]["sequence"]
        await pool.execute(
            "UPDATE audit_replays SET published = published + $2, last_sequence = $3, "
            "updated_at = $4 WHERE replay_id = $1", replay_id, len(rows), after, utc_now())


class ReplayRunner:
    """The service's running replays, each a background task; unfinished ones resume at start."""

    def __init__(self, pool_of: Callable[[], asyncpg.Pool[Any]], kafka_bootstrap: str) -> None:
        self._pool_of = pool_of  # called when needed: the pool opens with the lifespan
        self._kafka = kafka_bootstrap
        self._stopping = asyncio.Event()
        self._tasks: dict[UUID, asyncio.Task[None]] = {}

    def start(self, replay_id: UUID) -> None:
        if replay_id not in self._tasks or self._tasks[replay_id].done():
            self._tasks[replay_id] = asyncio.create_task(self._run(replay_id),
                                                         name=f"replay {replay_id}")

    async def resume(self) -> None:
        pool = self._pool_of()
        for row in await pool.fetch("SELECT replay_id FROM audit_replays "
                                    "WHERE status = 'running' ORDER BY requested_at"):
            self.start(row["replay_id"])

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, replay_id: UUID) -> None:
        publisher = KafkaPublisher(self._kafka, client_id="audit-replay")
        try:
            await publisher.start()
            await run(self._pool_of(), publisher, replay_id, stopping=self._stopping)
        except Exception as error:  # left 'running': the next start tries again
            log.error("replay stopped", replay_id=str(replay_id), error=repr(error))
        finally:
            await publisher.stop()


async def topic_exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="audit-replay",
                                request_timeout_ms=5000)
    try:
        await admin.start()
        return topic in await admin.list_topics()
    finally:
        await admin.close()
