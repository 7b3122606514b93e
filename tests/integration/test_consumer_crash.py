"""A consumer killed between its database commit and its offset commit applies nothing twice.

The consumer runs in a subprocess (tests/integration/crash/consume.py) that
kills itself with ``os._exit`` after the N-th event's transaction committed
and before that event's offset reached Kafka. A restarted consumer gets the
uncommitted events again; the inbox turns them into skips. The same run with
the inbox disabled applies the crashed event twice, which shows the test
would catch a consumer without one.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from eventkit.kafka_client import committed_offsets
from eventkit.migrations import apply_migrations
from eventkit.publisher import KafkaPublisher
from eventkit.testing.consumer_contract import eventually, thing

pytestmark = pytest.mark.integration

# The harness's kafka_topics fixture: (name, partitions=3) -> the test's own topic name.
Topics = Callable[..., Awaitable[str]]

SCRIPT = Path(__file__).parent / "crash" / "consume.py"
CRASH_EXIT_CODE = 17
EVENTS = 60
CRASH_AFTER = 25
TIMEOUT = 90.0


@dataclass
class CrashRun:
    crashed_event: UUID
    applied_at_crash: int
    committed_at_crash: int
    second_run: dict[str, int]
    effects: dict[UUID, int]
    event_ids: list[UUID]


async def _spawn(log: Path, *args: str) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), *args, stdout=out, stderr=asyncio.subprocess.STDOUT
        )


def _lines(log: Path, prefix: str) -> list[str]:
    return [
        line.removeprefix(prefix)
        for line in log.read_text().splitlines()
        if line.startswith(prefix)
    ]


async def crash_and_restart(
    *, database_url: str, bootstrap: str, topic: str, tmp_path: Path, inbox: bool
) -> CrashRun:
    await apply_migrations(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TABLE crash_effects (event_id uuid NOT NULL)")
        events = [thing(f"user-{n % 10}", n // 10 + 1) for n in range(EVENTS)]
        publisher = KafkaPublisher(bootstrap)
        await publisher.start()
        try:
            await publisher.publish([e.to_kafka(topic) for e in events])
        finally:
            await publisher.stop()

        group = f"crash-{uuid4().hex[:8]}"
        common = ["--database-url", database_url, "--bootstrap", bootstrap,
                  "--topic", topic, "--group", group, "--commit-every", "5"]
        if not inbox:
            common.append("--without-inbox")

        first_log = tmp_path / "first.log"
        first = await _spawn(first_log, *common, "--crash-after", str(CRASH_AFTER))
        code = await asyncio.wait_for(first.wait(), TIMEOUT)
        assert code == CRASH_EXIT_CODE, first_log.read_text()
        [crashed] = _lines(first_log, "CRASHING ")
        committed_at_crash = sum((await committed_offsets(bootstrap, group)).values())
        # Other partitions' transactions may have committed while the hook ran.
        applied_at_crash = await connection.fetchval("SELECT count(*) FROM crash_effects")
        assert applied_at_crash >= CRASH_AFTER
        crashed_rows = await connection.fetchval(
            "SELECT count(*) FROM crash_effects WHERE event_id = $1", UUID(crashed)
        )
        assert crashed_rows == 1  # the crashed event's transaction did commit

        second_log = tmp_path / "second.log"
        second = await _spawn(second_log, *common)
        try:

            async def all_committed() -> bool:
                offsets = await committed_offsets(bootstrap, group)
                return sum(offsets.values()) == EVENTS

            await eventually(all_committed, TIMEOUT)
        finally:
            second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), TIMEOUT)
        assert code == 0, second_log.read_text()
        [stats] = _lines(second_log, "STATS ")

        rows = await connection.fetch(
            "SELECT event_id, count(*) AS n FROM crash_effects GROUP BY event_id"
        )
    finally:
        await connection.close()
    return CrashRun(
        crashed_event=UUID(crashed),
        applied_at_crash=applied_at_crash,
        committed_at_crash=committed_at_crash,
        second_run=json.loads(stats),
        effects={row["event_id"]: row["n"] for row in rows},
        event_ids=[e.id for e in events],
    )


async def test_given_a_crash_after_the_database_commit_then_every_effect_is_there_exactly_once(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> None:
    topic = await kafka_topics("crash", partitions=3)
    run = await crash_and_restart(
        database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
        tmp_path=tmp_path, inbox=True,
    )
    # The crashed event's offset never reached Kafka, so it was delivered again...
    assert run.committed_at_crash < run.applied_at_crash
    assert run.second_run["skipped"] == run.applied_at_crash - run.committed_at_crash
    # ...and changed nothing: every event has its effect, once.
    assert run.effects == dict.fromkeys(run.event_ids, 1)
    assert run.second_run["processed"] == EVENTS - run.applied_at_crash


async def test_given_the_same_crash_without_the_inbox_then_the_redelivered_events_apply_twice(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> None:
    topic = await kafka_topics("crash", partitions=3)
    run = await crash_and_restart(
        database_url=database_url, bootstrap=kafka_bootstrap, topic=topic,
        tmp_path=tmp_path, inbox=False,
    )
    redelivered = run.applied_at_crash - run.committed_at_crash
    assert redelivered >= 1
    assert run.effects[run.crashed_event] == 2
    assert sum(run.effects.values()) == EVENTS + redelivered
    assert sorted(run.effects) == sorted(run.event_ids)
