"""The audit service logs every event of every Guestlist topic exactly once, in a gapless
verified chain, even when it is killed mid-batch and started again; new topics join by
themselves; it runs as a role that may only INSERT and SELECT on the log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from eventkit.envelope import Envelope, KafkaRecord
from eventkit.migrations import apply_migrations
from eventkit.publisher import KafkaPublisher
from eventkit.testing.consumer_contract import eventually
from guestlist.stack.ports import free_port
from services.audit import log
from services.audit.bootstrap import MIGRATIONS
from services.audit.domain import GENESIS_HASH, ChainCheck

pytestmark = pytest.mark.integration

Topics = Callable[..., Awaitable[str]]
SERVICES = {"identity.user": "identity", "invitations.invitation": "invitations",
            "notifications.delivery": "notifications"}


def event(service: str, n: int) -> Envelope:
    return Envelope(
        id=uuid4(), type=f"guestlist.{service}.ThingHappened.v1", subject=f"{service}-{n % 50}",
        time=datetime.now(UTC), actor_id="system", sequence=n, data_json=f'{{"n":{n}}}',
    )


async def restricted_role(database_url: str) -> str:
    """A login role like the deployed service's: a member of guestlist_audit_writer only."""
    await apply_migrations(database_url, MIGRATIONS)
    name = f"audit_svc_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"CREATE ROLE {name} LOGIN IN ROLE guestlist_audit_writer")
    finally:
        await connection.close()
    rest = database_url.partition("://")[2].partition("@")[2]
    return f"postgresql://{name}@{rest}"


def service_environment(
    *, database_url: str, admin_url: str, kafka: str, prefix: str, tmp: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "AUDIT_ADMIN_DATABASE_URL": admin_url,
        "KAFKA_BOOTSTRAP": kafka,
        "HTTP_PORT": str(free_port()),
        "AUDIT_CONSUMER_GROUP": f"{prefix}-audit",
        "AUDIT_TOPIC_PATTERN": rf"^{prefix}\.(?!.*\.dlq$)",
        "AUDIT_ACCESS_TOPIC": f"{prefix}.audit.access",
        "AUDIT_SIGNING_KEY_FILE": str(tmp / "signing-key.pem"),
        "LOG_LEVEL": "WARNING",
    }


@asynccontextmanager
async def audit_process(env: dict[str, str], log_file: Path) -> AsyncIterator[
        asyncio.subprocess.Process]:
    with log_file.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.audit", env=env, stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 60)


async def publish(kafka: str, records: list[KafkaRecord]) -> None:
    publisher = KafkaPublisher(kafka, client_id="audit-test")
    await publisher.start()
    try:
        await publisher.publish(records)
    finally:
        await publisher.stop()


async def test_every_event_is_logged_once_across_a_kill_and_the_chain_verifies(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> None:
    topics = {name: await kafka_topics(name) for name in SERVICES}
    prefix = next(iter(topics.values())).split(".")[0]
    events = [(topics[name], event(service, n))
              for n in range(3000) for name, service in SERVICES.items() if n % 3 == 0 or
              name == "identity.user"]
    records = [e.to_kafka(topic) for topic, e in events]
    records += records[:100]  # the relay may repeat events: they are logged once
    await publish(kafka_bootstrap, records)
    env = service_environment(
        database_url=await restricted_role(database_url), admin_url=database_url,
        kafka=kafka_bootstrap, prefix=prefix, tmp=tmp_path,
    )
    db = await asyncpg.connect(database_url)
    try:

        async def count() -> int:
            return int(await db.fetchval("SELECT count(*) FROM audit_log"))

        async with audit_process(env, tmp_path / "audit.log") as first:

            async def some() -> bool:
                return await count() > 0

            await eventually(some, 90)
            first.kill()  # SIGKILL: no goodbye, whatever batch is in hand is cut off
            await first.wait()
        killed_at = await count()
        async with audit_process(env, tmp_path / "audit.log"):

            async def all_of_them() -> bool:
                return await count() >= len(events)

            await eventually(all_of_them, 120)
            # A topic created now is read without any change to the service.
            late_topic = await kafka_topics("projections.access")
            late = event("projections", 1)
            await publish(kafka_bootstrap, [late.to_kafka(late_topic)])

            async def late_arrived() -> bool:
                return bool(await db.fetchval(
                    "SELECT count(*) FROM audit_log WHERE ce_id = $1", late.id))

            await eventually(late_arrived, 90)
        rows = await db.fetch(f"SELECT {log.ENTRY_COLUMNS} FROM audit_log ORDER BY sequence")
    finally:
        await db.close()

    assert 0 < killed_at < len(events), (tmp_path / "audit.log").read_text()[-3000:]
    logged: list[UUID] = [row["ce_id"] for row in rows]
    assert len(logged) == len(set(logged)) == len(events) + 1
    assert set(logged) == {e.id for _, e in events} | {late.id}
    assert [row["sequence"] for row in rows] == list(range(1, len(rows) + 1))
    # Per partition, the log keeps Kafka's order.
    by_partition: dict[tuple[str, int], list[int]] = {}
    for row in rows:
        by_partition.setdefault((row["topic"], row["kafka_partition"]), []).append(
            row["kafka_offset"])
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
    check = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1)
    for row in rows:
        check.feed(log.entry_from_row(row), bytes(row["prev_hash"]), bytes(row["hash"]))
    assert (check.ok, check.checked) == (True, len(rows))
