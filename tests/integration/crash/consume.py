"""A consumer process for the crash test: the real runner, PostgreSQL store and Kafka.

With ``--crash-after N`` the process kills itself (``os._exit``) right after
the N-th event's transaction committed and before its Kafka offset is
committed: the window where only the inbox stops a redelivery from applying
the event twice. ``--without-inbox`` swaps in a store whose transactions
forget what was processed, to show that the window is real. Both are
injected here, from outside the runner.

Prints ``CRASHING <event id>`` before dying, ``STATS <json>`` after a
graceful stop (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from eventkit.consumer import ConsumerSettings, Handled, Outcome, kafka_consumer
from eventkit.envelope import Envelope
from eventkit.postgres_store import PostgresEventStore, PostgresTransaction
from eventkit.store import NewEvent, RecordedEvent, Transaction

CRASH_EXIT_CODE = 17


class ForgetfulTransaction:
    """Delegates everything but the inbox: every event looks new."""

    def __init__(self, inner: PostgresTransaction) -> None:
        self.connection = inner.connection
        self._inner = inner

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor_id: str,
        traceparent: str | None = None,
    ) -> list[RecordedEvent]:
        return await self._inner.append(
            stream_id, expected_version, events, actor_id=actor_id, traceparent=traceparent
        )

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        return await self._inner.read_stream(stream_id, after_version=after_version)

    async def record_processed(self, consumer: str, event_id: UUID) -> bool:
        return True


class ForgetfulStore(PostgresEventStore):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ForgetfulTransaction]:  # type: ignore[override]
        async with super().transaction() as tx:
            yield ForgetfulTransaction(tx)


async def main(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=4)
    store = (ForgetfulStore if args.without_inbox else PostgresEventStore)(pool)
    applied = 0

    async def insert_effect(envelope: Envelope, tx: Transaction) -> None:
        assert isinstance(tx, PostgresTransaction | ForgetfulTransaction)
        await tx.connection.execute("INSERT INTO crash_effects (event_id) VALUES ($1)", envelope.id)

    async def crash_after_commit(handled: Handled) -> None:
        nonlocal applied
        if handled.outcome is Outcome.APPLIED:
            applied += 1
            if applied == args.crash_after and handled.envelope is not None:
                print(f"CRASHING {handled.envelope.id}", flush=True)
                os._exit(CRASH_EXIT_CODE)

    runner = kafka_consumer(
        bootstrap_servers=args.bootstrap,
        group=args.group,
        store=store,
        handler=insert_effect,
        topics=[args.topic],
        settings=ConsumerSettings(commit_every=args.commit_every, commit_interval=0.5),
        on_handled=crash_after_commit if args.crash_after else None,
    )
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        await runner.run(stopping)
    finally:
        await pool.close()
    stats: dict[str, Any] = {
        "processed": runner.processed,
        "skipped": runner.skipped,
        "dead_lettered": runner.dead_lettered,
    }
    print(f"STATS {json.dumps(stats)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--commit-every", type=int, default=5)
    parser.add_argument("--without-inbox", action="store_true")
    asyncio.run(main(parser.parse_args()))
