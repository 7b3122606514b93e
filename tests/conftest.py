"""Real PostgreSQL and Kafka for the whole test session.

One server of each kind per session, started together on free ports and only
when a collected test needs it; every test gets its own database and its own
topic prefix. A server that cannot start fails the tests that need it, with
the reason; nothing is skipped. `DATABASE_URL` / `KAFKA_BOOTSTRAP` point the
tests at servers that already run.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import pytest

from guestlist.stack.harness import ServerHarness, ServerStartError
from guestlist.stack.kafka import ExternalKafka, KafkaBroker, create_topics
from guestlist.stack.ports import free_port
from guestlist.stack.postgres import ExternalPostgres, PostgresServer
from guestlist.stack.smtp_sink import SmtpSink

_NEEDS_POSTGRES = {"pg_server", "database_url"}
_NEEDS_KAFKA = {"kafka_server", "kafka_bootstrap", "kafka_topics"}


class TopicFactory(Protocol):
    async def __call__(self, name: str, partitions: int = 3) -> str: ...


@pytest.fixture(scope="session")
async def server_harness(request: pytest.FixtureRequest) -> AsyncIterator[ServerHarness]:
    needed = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    harness = ServerHarness()
    # Both at once: the broker's JVM start-up overlaps PostgreSQL's initdb.
    await harness.start(postgres=bool(needed & _NEEDS_POSTGRES), kafka=bool(needed & _NEEDS_KAFKA))
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture(scope="session")
async def pg_server(server_harness: ServerHarness) -> PostgresServer | ExternalPostgres:
    try:
        return await server_harness.postgres()
    except ServerStartError as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


@pytest.fixture
async def database_url(pg_server: PostgresServer | ExternalPostgres) -> AsyncIterator[str]:
    """A fresh database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await pg_server.create_database(name)
    yield url
    try:
        await pg_server.drop_database(name)
    except Exception as exc:  # a leftover test database harms nobody
        warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
async def kafka_server(server_harness: ServerHarness) -> KafkaBroker | ExternalKafka:
    try:
        return await server_harness.kafka()
    except ServerStartError as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: KafkaBroker | ExternalKafka) -> str:
    return kafka_server.bootstrap


@pytest.fixture
def kafka_topics(kafka_bootstrap: str) -> TopicFactory:
    """`await kafka_topics("name", partitions=3)` creates `<test prefix>.name` and returns it."""
    prefix = f"t{uuid.uuid4().hex[:10]}"

    async def create(name: str, partitions: int = 3) -> str:
        topic = f"{prefix}.{name}"
        await create_topics(kafka_bootstrap, {topic: partitions})
        return topic

    return create


@pytest.fixture
async def smtp_sink(tmp_path: Path) -> AsyncIterator[SmtpSink]:
    """A real SMTP server on a free port; `.messages()` lists what arrived as .eml files."""
    sink = SmtpSink(tmp_path / "mail", free_port())
    await sink.start()
    yield sink
    await sink.stop()
