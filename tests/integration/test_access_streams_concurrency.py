"""Many reads at the same moment on one access stream: identity's ``access-<person>`` and
projections' ``projections-access-<reader>``, on the real PostgreSQL and Kafka.

Each read appends its PersonalDataViewed to the same stream; they must take turns instead
of racing for one version (a 409 or 500 to the reader, or a read with no trace). The
invitations service's ``access-<invitation>`` has its own test in
``test_invitations_access.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import pytest

from eventkit.testing.kafka import read_topic
from guestlist.stack.smtp_sink import SmtpSink
from services.identity.testing import make_admin, open_platform, register_active, running_identity
from tests.integration.test_projections_directory import (
    Topics,
    eventually,
    registered,
    running_service,
)

pytestmark = pytest.mark.integration

# Enough at once that racing writers lose their version more often than a retry can absorb.
READS = 150


async def stream(pool: Any, stream_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT version, type, data::text AS data FROM events WHERE stream_id = $1 "
        "ORDER BY version", stream_id)
    return [(row["version"], row["type"], json.loads(row["data"])) for row in rows]


async def test_many_reads_of_one_person_at_once_each_answer_and_each_leave_one_event(
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with running_identity(database_url, kafka_bootstrap,
                                smtp_port=smtp_sink.port) as (client, app):
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        user_id, _ = await register_active(client, app, "Ada Lovelace")
        pool = app.state.identity.accounts.work.store.pool
        before = await stream(pool, f"access-{user_id}")
        reads = await asyncio.gather(*(
            client.get(f"/v1/users/{user_id}", headers={**admin, "X-Purpose": "support_ticket"})
            for _ in range(READS)))
        after = await stream(pool, f"access-{user_id}")

    assert [read.status_code for read in reads] == [200] * READS, {r.text for r in reads}
    assert before == []
    assert [version for version, _, _ in after] == list(range(1, READS + 1))
    assert {kind for _, kind, _ in after} == {"guestlist.identity.PersonalDataViewed.v1"}
    assert {(data["subject_id"], data["purpose"]) for _, _, data in after} == {
        (user_id, "support_ticket")}


async def test_many_reads_by_one_reader_at_once_each_answer_and_each_leave_one_event(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        joined, ana = registered(service, address="ana@example.org", name="Ana Lima")
        await service.publish(joined)
        await eventually(lambda: _projected(service, ana))
        reads = await asyncio.gather(*(
            service.get(f"/v1/directory/users/{ana}") for _ in range(READS)))
        after = await stream(service.app.state.runtime.database.pool,
                             f"projections-access-{service.manager_id}")
        published = await read_topic(kafka_bootstrap, service.topics["projections.access"],
                                     READS)

    assert [read.status_code for read in reads] == [200] * READS, {r.text for r in reads}
    assert [version for version, _, _ in after] == list(range(1, READS + 1))
    assert {(data["subject_id"], data["actor_id"]) for _, _, data in after} == {
        (str(ana), str(service.manager_id))}
    assert sorted(e.sequence for e in published) == list(range(1, READS + 1))


async def _projected(service: Any, user_id: UUID) -> bool:
    # Straight from the table: a look through the API would itself be an audited view.
    return bool(await service.fetch(
        "SELECT 1 FROM directory_users_v1 WHERE user_id = $1", user_id))

