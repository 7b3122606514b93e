"""Services that open an invitation's sealed fields read its key from the invitations service;
each key given leaves PersonalDataViewed on invitations.access, as identity's key reads do.
On the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from services.identity.handlers import service_subject
from services.invitations.testing import ACCESS_TOPIC, events_on_kafka, running_invitations

pytestmark = pytest.mark.integration
VIEWED = "guestlist.invitations.PersonalDataViewed.v1"
ENDPOINT = "GET /v1/internal/personal-data-keys/{subject_id}"


def key_reads(records: list[dict[str, Any]], invitation_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r["headers"]["ce_type"] == VIEWED
            and r["value"]["subject_id"] == invitation_id and r["value"]["endpoint"] == ENDPOINT]


async def test_each_key_given_to_a_service_is_recorded_and_an_unknown_key_leaves_nothing(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    identity = service_subject("identity")  # the subject of identity's own token
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        created = await inv.client.post(
            "/v1/invitations", json={"invitee_email": f"kim-{uuid4().hex[:8]}@example.org"},
            headers=inv.auth())
        invitation_id = created.json()["id"]
        reader = inv.auth(subject=identity, permissions=["read_personal_data_keys"],
                          **{"X-Purpose": "invitation_registration"})
        given = await inv.client.get(f"/v1/internal/personal-data-keys/{invitation_id}",
                                     headers=reader)
        unknown = await inv.client.get(f"/v1/internal/personal-data-keys/{uuid4()}",
                                       headers=reader)
        records = await events_on_kafka(
            kafka_bootstrap, ACCESS_TOPIC, until=lambda seen: bool(key_reads(seen, invitation_id))
        )
        await asyncio.sleep(1)  # and no second one arrives
        records = await events_on_kafka(
            kafka_bootstrap, ACCESS_TOPIC, until=lambda seen: bool(key_reads(seen, invitation_id))
        )

    assert created.status_code == 201, created.text
    assert given.status_code == 200 and given.json()["key"]
    assert unknown.status_code == 404
    [read] = key_reads(records, invitation_id)
    assert read["value"] == {
        "actor_id": str(identity), "subject_id": invitation_id, "fields": ["data_key"],
        "endpoint": ENDPOINT, "purpose": "invitation_registration",
    }
    assert read["headers"]["ce_actorid"] == str(identity)
