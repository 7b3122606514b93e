"""The database itself keeps the audit log append-only: a trigger refuses every change,
and the service's role may only INSERT and SELECT."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest

from eventkit.envelope import Envelope
from eventkit.inbox import Delivery
from eventkit.kafka_client import ReceivedMessage
from eventkit.migrations import apply_migrations
from services.audit import log
from services.audit.bootstrap import MIGRATIONS

pytestmark = pytest.mark.integration

CHANGES = {
    "UPDATE audit_log": "UPDATE audit_log SET data = '{}' WHERE sequence = 1",
    "DELETE audit_log": "DELETE FROM audit_log WHERE sequence = 1",
    "TRUNCATE audit_log": "TRUNCATE audit_log",
    # The people the entries name (derived, in no hash) are kept as the log is.
    "UPDATE audit_log_people": "UPDATE audit_log_people SET person = 'x' WHERE sequence = 1",
    "DELETE audit_log_people": "DELETE FROM audit_log_people WHERE sequence = 1",
    "TRUNCATE audit_log_people": "TRUNCATE audit_log_people",
}


def delivery(n: int) -> Delivery:
    envelope = Envelope(
        id=uuid4(), type="guestlist.identity.UserRegistered.v1", subject=f"user-{n}",
        time=datetime.now(UTC), actor_id="system", sequence=1,
        data_json='{"email":"x","granted_by":"admin-1"}',
    )
    key, value, headers = envelope.to_kafka("identity.user")[1:]
    return Delivery(ReceivedMessage("identity.user", 0, n, key, value, tuple(headers)), envelope)


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    await apply_migrations(database_url, MIGRATIONS)
    connection = await asyncpg.connect(database_url)
    async with connection.transaction():
        await log.append(connection, [delivery(1), delivery(2)], received_at=datetime.now(UTC))
    yield connection
    await connection.close()


@pytest.fixture
async def service_role(owner: asyncpg.Connection, database_url: str) -> AsyncIterator[str]:
    """A login role like the deployed service's: a member of guestlist_audit_writer only."""
    name = f"audit_svc_{uuid.uuid4().hex[:8]}"
    await owner.execute(f"CREATE ROLE {name} LOGIN IN ROLE guestlist_audit_writer")
    _user, _, rest = database_url.partition("://")[2].partition("@")
    yield f"postgresql://{name}@{rest}"
    await owner.execute(f"REVOKE guestlist_audit_writer FROM {name}")


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_the_trigger_refuses_a_change_even_from_the_owner(
    owner: asyncpg.Connection, change: str
) -> None:
    operation, table = change.split()
    with pytest.raises(asyncpg.InsufficientPrivilegeError,
                       match=f"append-only: {operation} on {table}"):
        await owner.execute(CHANGES[change])
    assert await owner.fetchval("SELECT count(*) FROM audit_log") == 2
    assert await owner.fetchval("SELECT count(*) FROM audit_log_people") == 2


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_the_service_role_may_not_change_the_log(
    owner: asyncpg.Connection, service_role: str, change: str
) -> None:
    connection = await asyncpg.connect(service_role)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await connection.execute(CHANGES[change])
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await connection.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    finally:
        await connection.close()
    assert await owner.fetchval("SELECT count(*) FROM audit_log") == 2
    assert await owner.fetchval("SELECT count(*) FROM audit_log_people") == 2


async def test_the_service_role_may_append_and_read(
    owner: asyncpg.Connection, service_role: str
) -> None:
    connection = await asyncpg.connect(service_role)
    try:
        async with connection.transaction():
            appended = await log.append(connection, [delivery(3)], received_at=datetime.now(UTC))
        rows = await connection.fetch("SELECT sequence FROM audit_log ORDER BY sequence")
        named = await connection.fetch("SELECT person, sequence FROM audit_log_people "
                                       "ORDER BY sequence")
    finally:
        await connection.close()
    assert [c.entry.sequence for c in appended] == [3]
    assert [r["sequence"] for r in rows] == [1, 2, 3]
    assert [(r["person"], r["sequence"]) for r in named] == [
        ("admin-1", 1), ("admin-1", 2), ("admin-1", 3)]
