"""Reads of an invitee's data leave PersonalDataViewed on invitations.access, and reads wait for
min_position; on the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from uuid import UUID, uuid4

import pytest

from eventkit.position import position_of_id
from schemas.identity import UserDeleted, UserRegistered
from services.invitations.testing import (
    ACCESS_TOPIC,
    RunningInvitations,
    events_on_kafka,
    publish,
    running_invitations,
)

pytestmark = pytest.mark.integration
VIEWED = "guestlist.invitations.PersonalDataViewed.v1"


def email() -> str:
    return f"lin-{uuid4().hex[:8]}@example.org"


async def invite(inv: RunningInvitations, **body: Any) -> dict[str, Any]:
    answer = await inv.client.post("/v1/invitations", json={"invitee_email": email(), **body},
                                   headers=inv.auth())
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def finished(inv: RunningInvitations, batch_id: str) -> Any:
    """The batch's status once the bulk worker gave every row an outcome."""
    async with asyncio.timeout(60):
        while True:
            status = await inv.client.get(f"/v1/invitations/bulk/{batch_id}", headers=inv.auth())
            if status.json()["completed_at"] is not None:
                return status
            await asyncio.sleep(0.1)


def viewed(records: list[dict[str, Any]], invitation_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r["headers"]["ce_type"] == VIEWED
            and r["value"]["subject_id"] == invitation_id]


async def test_each_read_that_shows_an_invitees_data_leaves_one_access_event(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        created = await invite(inv, greeting="Hello Lin")
        invitation_id = created["id"]
        shown = await inv.client.get(f"/v1/invitations/{invitation_id}",
                                     headers=inv.auth(**{"X-Purpose": "support_ticket"}))
        plain = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth())
        url = await inv.client.get(f"/v1/invitations/{invitation_id}/url", headers=inv.auth())
        public = await inv.client.get("/v1/invitations/lookup", params={"code": created["code"]})
        bad_purpose = await inv.client.get(f"/v1/invitations/{invitation_id}",
                                           headers=inv.auth(**{"X-Purpose": "Because!"}))
        records = await events_on_kafka(
            kafka_bootstrap, ACCESS_TOPIC,
            until=lambda seen: len(viewed(seen, invitation_id)) >= 4,
        )
        await asyncio.sleep(1)  # and nothing more arrives for the refused read
        records = await events_on_kafka(
            kafka_bootstrap, ACCESS_TOPIC,
            until=lambda seen: len(viewed(seen, invitation_id)) >= 4,
        )

    assert shown.status_code == plain.status_code == url.status_code == public.status_code == 200
    assert shown.json()["invitee_email"].startswith("lin-")
    assert bad_purpose.status_code == 422 and "X-Purpose" in bad_purpose.text
    mine = viewed(records, invitation_id)
    assert [r["value"]["purpose"] for r in mine] == [
        "support_ticket", "invitation_management", "invitation_link", "invitation_registration"
    ]
    first, _, link, lookup = mine
    assert first["value"] == {
        "actor_id": str(inv.manager_id), "subject_id": invitation_id,
        "fields": ["invitee_email", "greeting"], "endpoint": "GET /v1/invitations/{invitation_id}",
        "purpose": "support_ticket",
    }
    assert first["headers"]["ce_source"] == "/guestlist/invitations"
    assert first["headers"]["ce_actorid"] == str(inv.manager_id)
    assert first["key"] == f"access-{invitation_id}"
    assert link["value"]["fields"] == ["invitation_code"]
    assert link["value"]["endpoint"] == "GET /v1/invitations/{invitation_id}/url"
    # the registration page is read by whoever holds the code: no actor
    assert lookup["value"]["actor_id"] is None and lookup["value"]["fields"] == ["greeting"]
    assert lookup["headers"]["ce_actorid"] == "system"


async def test_many_reads_of_one_invitation_at_once_each_answer_and_each_leave_their_event(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        created = await invite(inv, greeting="Hello")
        reads = await asyncio.gather(
            *(inv.client.get(f"/v1/invitations/{created['id']}", headers=inv.auth())
              for _ in range(25)),
            *(inv.client.get("/v1/invitations/lookup", params={"code": created["code"]})
              for _ in range(25)),
        )
        versions = [row["version"] for row in await inv.service.store.pool.fetch(
            "SELECT version FROM events WHERE stream_id = $1 ORDER BY version",
            f"access-{created['id']}",
        )]

    assert [read.status_code for read in reads] == [200] * 50
    assert versions == list(range(1, 51))


async def test_a_read_of_erased_data_or_of_a_batch_leaves_no_access_event(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        invitation_id = (await invite(inv))["id"]
        user = uuid4()
        await publish(kafka_bootstrap, inv.settings.user_topic, user, UserRegistered(
            user_id=user, email="x", locale="en", via_invitation_id=UUID(invitation_id)))
        accepted = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth())
        await publish(kafka_bootstrap, inv.settings.user_topic, user, UserDeleted(user_id=user))
        async with asyncio.timeout(60):
            while await inv.service.store.pool.fetchval("SELECT count(*) FROM invitation_keys"):
                await asyncio.sleep(0.1)
        erased = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth())
        batch = await inv.client.post("/v1/invitations/bulk", json={"rows": [
            {"invitee_email": email()}, {"invitee_email": "nope"}]}, headers=inv.auth())
        status = await finished(inv, batch.json()["batch_id"])
        access = await inv.service.store.pool.fetch(
            "SELECT data FROM events WHERE topic = $1 ORDER BY position", ACCESS_TOPIC
        )

    assert erased.json()["invitee_email"] == "[erased]"
    assert status.json()["created"] == 1 and status.json()["invalid"] == 1
    # only the read before the erasure showed anything
    assert len(access) == 1 and accepted.status_code == 200


async def test_reads_wait_for_min_position_and_say_whether_they_reached_it(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(
        database_url, kafka_bootstrap, kafka_topics, read_wait_seconds=30
    ) as inv:
        created = await invite(inv)
        invitation_id = created["id"]
        own = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth(),
                                   params={"min_position": created["position"]})
        # identity's registration, named by its event's position, before this service saw it
        user, registration = uuid4(), uuid4()
        waiting = asyncio.create_task(inv.client.get(
            f"/v1/invitations/{invitation_id}",
            headers=inv.auth(**{"X-Min-Position": position_of_id(registration)}),
        ))
        await asyncio.sleep(0.5)
        await publish(kafka_bootstrap, inv.settings.user_topic, user, UserRegistered(
            user_id=user, email="x", locale="en", via_invitation_id=UUID(invitation_id),
        ), event_id=registration)
        after_registration = await waiting
        malformed = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth(),
                                         params={"min_position": "p1.!!"})
        bad_header = await inv.client.get(
            f"/v1/invitations/{invitation_id}", headers=inv.auth(**{"X-Min-Position": "offset-7"})
        )
        rows = [{"invitee_email": email()}]
        batch_id = (await inv.client.post("/v1/invitations/bulk", json={"rows": rows},
                                          headers=inv.auth())).json()["batch_id"]
        await finished(inv, batch_id)
        batch = await inv.client.get(f"/v1/invitations/bulk/{batch_id}", headers=inv.auth(),
                                     params={"min_position": created["position"]})
    async with running_invitations(
        database_url, kafka_bootstrap, kafka_topics, read_wait_seconds=0.3
    ) as inv:
        never = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth(),
                                     params={"min_position": position_of_id(uuid4())})

    assert own.status_code == 200
    assert own.json()["consistency"] == {"position": created["position"],
                                         "min_position": created["position"], "reached": True}
    assert own.headers["x-min-position-reached"] == "true"
    assert own.headers["x-position"] == created["position"]
    view = after_registration.json()
    assert view["status"] == "accepted" and view["accepted_user_id"] == str(user)
    assert view["consistency"]["reached"] is True
    assert view["consistency"]["position"] != created["position"]  # the acceptance's event
    assert malformed.status_code == 422 and "min_position" in malformed.text
    assert bad_header.status_code == 422 and "X-Min-Position" in bad_header.text
    assert batch.json()["consistency"]["reached"] is True
    created_row = batch.json()["rows"][0]["invitation_id"]
    assert batch.headers["x-position"] == batch.json()["consistency"]["position"]
    assert created_row is not None
    assert never.status_code == 200 and never.headers["x-min-position-reached"] == "false"
    assert never.json()["consistency"]["reached"] is False
    assert re.fullmatch(r"p1\.[A-Za-z0-9_-]{22}", never.json()["consistency"]["position"])
