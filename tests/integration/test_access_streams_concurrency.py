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

import pytest

from eventkit.position import position_of_id
from eventkit.testing.kafka import read_topic
from guestlist.stack.smtp_sink import SmtpSink
from services.identity.testing import make_admin, open_platform, register_active, running_identity
from tests.integration.test_projections_directory import Topics, registered, running_service

pytestmark = pytest.mark.integration

# Enough at once that racing writers lose their version more often than a retry can absorb:
# without turns, identity fails at 150 reads; projections' one-statement appends race only
# for a round trip, so it takes about a thousand.
PERSON_READS = 150
READER_READS = 1000


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
            for _ in range(PERSON_READS)))
        after = await stream(pool, f"access-{user_id}")

    assert [read.status_code for read in reads] == [200] * PERSON_READS, {r.text for r in reads}
    assert before == []
    assert [version for version, _, _ in after] == list(range(1, PERSON_READS + 1))
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
        # A search that matches nobody waits for the position but shows (and audits) no one.
        reached = await service.get("/v1/directory/users", q="nobody-at-all",
                                    min_position=position_of_id(joined.id))
        assert reached.json()["consistency"]["reached"] is True, reached.text
        reads = await asyncio.gather(*(
            service.get(f"/v1/directory/users/{ana}") for _ in range(READER_READS)))
        after = await stream(service.app.state.runtime.database.pool,
                             f"projections-access-{service.manager_id}")
        published = await read_topic(kafka_bootstrap, service.topics["projections.access"],
                                     READER_READS)

    assert [read.status_code for read in reads] == [200] * READER_READS, {r.text for r in reads}
    assert [version for version, _, _ in after] == list(range(1, READER_READS + 1))
    assert {(data["subject_id"], data["actor_id"]) for _, _, data in after} == {
        (str(ana), str(service.manager_id))}
    assert sorted(e.sequence for e in published) == list(range(1, READER_READS + 1))

