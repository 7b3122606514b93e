"""Failed sign-ins per account in hopping windows: faust-streaming tables vs the SQL monitor.

The same ``LoginFailed`` events (one topic, 3 partitions, many accounts over
a few hours) are counted in one process by

- a faust-streaming app: an agent adds 1 per failure to a hopping-window
  table (15 minutes, every 5 minutes, by the event's ``ce_time``) backed by
  its changelog topic, once with ``processing_guarantee="at_least_once"``
  (faust's default) and once with ``"exactly_once"`` (Kafka transactions);
- the security read model: each event a row, in the inbox's transaction,
  windows counted by SQL when read.

Each rate is events over the time from starting the consumer (group join
included) until every event is counted, and also after the first one was.
The bench also checks that both give the same count per account for one
window, and prints what each guarantees after a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import faust
from faust.types import EventT

from bench.projections import Rate, Stopwatch, apply_rate, contract_envelope, publish
from eventkit.envelope import Envelope
from guestlist.stack.kafka import create_topics
from schemas.identity import LoginFailed

LOGIN_FAILED = str(LoginFailed.event_type)
SIZE, STEP = timedelta(minutes=15), timedelta(minutes=5)
PARTITIONS = 3

GUARANTEES = {
    "sql_security_read_model": (
        "exactly once in effect: each event's row, its inbox row and the partition's "
        "checkpoint commit in one PostgreSQL transaction, so a crash redelivers and the inbox "
        "skips what was applied; any window length is counted at read time, and a rebuild "
        "gives the same counts"),
    "faust_at_least_once": (
        "at least once: table updates go to the changelog topic as they happen and offsets are "
        "committed apart from them (every broker_commit_interval), so events processed after "
        "the last commit are counted again on recovery: counts can come out too high"),
    "faust_exactly_once": (
        "exactly once within Kafka: changelog writes and the source offsets commit in one Kafka "
        "transaction per partition, so a crash aborts the uncommitted ones and recovery reads "
        "committed changelog only; windows are fixed when the app is defined"),
}


def event_time(event: EventT) -> float:
    """The event's own time (``ce_time``), not the time Kafka received it."""
    headers = dict(event.message.headers or ())
    return datetime.fromisoformat(bytes(headers["ce_time"]).decode()).timestamp()


def failed_sign_ins_app(
    *, app_id: str, bootstrap: str, topic: str, partitions: int, size: timedelta,
    step: timedelta, guarantee: str, on_event: Callable[[], None] = lambda: None,
) -> tuple[faust.App, Any]:
    """A faust app counting ``LoginFailed`` per account (the message key) in hopping windows.

    Returns the app and its windowed table; ``on_event`` is called for every event seen.
    """
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, topic_partitions=partitions, topic_replication_factor=1,
                    processing_guarantee=guarantee)
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    table = app.Table("failed_sign_ins", default=int, partitions=partitions).hopping(
        size, step, expires=timedelta(days=30)).relative_to(event_time)

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            if dict(event.message.headers or ()).get("ce_type") == LOGIN_FAILED.encode():
                # A text key: bytes keys come back from the changelog as "b'...'" strings.
                table[bytes(event.key).decode()] += 1
            on_event()

    return app, table


def window_counts(table: Any) -> dict[tuple[str, float], int]:
    """{(account, window start): failures} from a windowed table's local data."""
    return {(key, float(window[0])): count for (key, window), count in table.table.data.items()}


async def faust_rate(
    bootstrap: str, topic: str, events: int, guarantee: str
) -> tuple[Rate, dict[tuple[str, float], int]]:
    watch = Stopwatch(events)
    app, table = failed_sign_ins_app(
        app_id=f"bench-faust-{uuid4().hex[:8]}", bootstrap=bootstrap, topic=topic,
        partitions=PARTITIONS, size=SIZE, step=STEP, guarantee=guarantee, on_event=watch.seen)
    await app.start()
    try:
        async with asyncio.timeout(900):
            await watch.done.wait()
        return watch.rate(), window_counts(table)
    finally:
        await app.stop()


def workload(events: int, accounts: int = 500) -> list[Envelope]:
    users = [uuid4() for _ in range(accounts)]
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    spread = timedelta(hours=4) / events
    return [contract_envelope(LoginFailed(user_id=users[n % accounts], failure="wrong_password",
                                  consecutive_failures=1 + n // accounts,
                                  client_address_hash="cd" * 32),
                      str(users[n % accounts]), start + spread * n)
            for n in range(events)]


async def sql_window(dsn: str, start: datetime) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            'SELECT user_id, count(*) FROM "security_events_v1" WHERE kind = \'login_failed\' '
            "AND occurred_at >= $1 AND occurred_at < $2 GROUP BY user_id", start, start + SIZE)
    finally:
        await connection.close()
    return {str(row["user_id"]): row["count"] for row in rows}


async def run(pg: Any, bootstrap: str, *, events: int) -> dict[str, Any]:
    topic = f"bench.faust.{uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: PARTITIONS})
    envelopes = workload(events)
    await publish(bootstrap, topic, envelopes)
    results: dict[str, Any] = {"events": events, "window": "hopping, 15 min every 5 min"}
    dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    sql = await apply_rate(dsn, bootstrap, topic, "security", events)
    results["sql_security_read_model"] = sql.figures()
    # One window in the middle of the history, as both count it.
    middle = envelopes[len(envelopes) // 2].time
    window_start = datetime.fromtimestamp(
        middle.timestamp() - middle.timestamp() % STEP.total_seconds(), UTC)
    by_sql = await sql_window(dsn, window_start)
    for guarantee in ("at_least_once", "exactly_once"):
        rate, counts = await faust_rate(bootstrap, topic, events, guarantee)
        by_faust = {account: count for (account, start), count in counts.items()
                    if start == window_start.timestamp()}
        results[f"faust_{guarantee}"] = {
            **rate.figures(), "ratio_to_sql": round(rate.per_second / sql.per_second, 2),
            "same_window_counts_as_sql": by_faust == by_sql}
    for name, guarantee_text in GUARANTEES.items():
        results[name]["after_a_crash"] = guarantee_text
    return results
