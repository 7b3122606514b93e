"""Acceptance through identity's UserRegistered, delivery tracking, time and bulk uploads, on the
real PostgreSQL and Kafka, with a clock the test moves instead of waiting."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from eventkit.registry import EventData
from schemas.identity import UserDeleted, UserRegistered
from schemas.notifications import NotificationSent
from services.invitations.scheduler import InvitationScheduler
from services.invitations.testing import (
    INVITATION_TOPIC,
    RunningInvitations,
    events_on_kafka,
    of_type,
    running_invitations,
)
from services.invitations.testing import publish as publish_event

pytestmark = pytest.mark.integration
DAY = timedelta(days=1)


def email() -> str:
    return f"grace-{uuid4().hex[:8]}@example.org"


async def publish(
    bootstrap: str, topic: str, subject: UUID, event: EventData, event_id: UUID | None = None
) -> None:
    await publish_event(bootstrap, topic, subject, event, event_id=event_id)


async def status_of(inv: RunningInvitations, invitation_id: str, wanted: str,
                    within: float = 60) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            view = (await inv.client.get(f"/v1/invitations/{invitation_id}",
                                         headers=inv.auth())).json()
            if view["status"] == wanted:
                return dict(view)
            await asyncio.sleep(0.2)


async def invite(inv: RunningInvitations, **body: Any) -> str:
    answer = await inv.client.post("/v1/invitations", json={"invitee_email": email(), **body},
                                   headers=inv.auth())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def test_registration_accepts_an_invitation_once_and_a_revoked_one_is_refused_once(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        accepted_id, revoked_id = await invite(inv), await invite(inv)
        await inv.client.delete(f"/v1/invitations/{revoked_id}", headers=inv.auth())
        user, late_user = uuid4(), uuid4()
        registered = UserRegistered(user_id=user, email="x", locale="en",
                                    via_invitation_id=UUID(accepted_id))
        # delivered twice (a redelivery), and a registration racing the revocation
        event_id = uuid4()
        for _ in range(2):
            await publish(kafka_bootstrap, inv.settings.user_topic, user, registered, event_id)
        late = UserRegistered(user_id=late_user, email="y", locale="en",
                              via_invitation_id=UUID(revoked_id))
        late_id = uuid4()
        for _ in range(2):
            await publish(kafka_bootstrap, inv.settings.user_topic, late_user, late, late_id)
        view = await status_of(inv, accepted_id, "accepted")
        records = await events_on_kafka(
            kafka_bootstrap, INVITATION_TOPIC,
            until=lambda seen: bool(of_type(seen, "InvitationAccepted", accepted_id))
            and bool(of_type(seen, "InvitationAcceptanceRefused", revoked_id)),
        )
        async with asyncio.timeout(30):  # the late registration was consumed too
            while await inv.service.store.pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE consumer = 'invitations'"
            ) < 2:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # and the redelivered copy
        revoked = (await inv.client.get(f"/v1/invitations/{revoked_id}",
                                        headers=inv.auth())).json()
        accepted_events = await inv.service.store.pool.fetchval(
            "SELECT count(*) FROM events WHERE type LIKE '%InvitationAccepted.%'"
        )
        refusals = await inv.service.store.pool.fetch(
            "SELECT stream_id, actor_id, data FROM events "
            "WHERE type LIKE '%InvitationAcceptanceRefused%'"
        )

    assert view["accepted_user_id"] == str(user) and view["accepted_at"] is not None
    accepted = of_type(records, "InvitationAccepted", accepted_id)
    assert accepted[0]["value"]["user_id"] == str(user)
    assert accepted[0]["headers"]["ce_actorid"] == "system"
    assert accepted_events == 1
    assert revoked["status"] == "revoked"
    # the registration that lost the race is on the record, once despite its redelivery
    assert len(refusals) == 1 and refusals[0]["stream_id"] == revoked_id
    assert refusals[0]["actor_id"] == "system"
    refusal = of_type(records, "InvitationAcceptanceRefused", revoked_id)[0]["value"]
    assert (refusal["user_id"], refusal["reason"]) == (str(late_user), "revoked")
    assert refusal["registered_at"]


async def test_notification_sent_sets_last_sent_and_counts_sends(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        invitation_id = await invite(inv)
        for attempt in (1, 2):
            await publish(kafka_bootstrap, inv.settings.delivery_topic, uuid4(), NotificationSent(
                notification_id=uuid4(), template="invitation", locale="en",
                recipient_email="x", cause_event_id=uuid4(),
                cause_type="guestlist.invitations.InvitationCreated.v1",
                cause_subject=invitation_id, attempt=attempt,
            ))
        async with asyncio.timeout(60):
            while True:
                view = (await inv.client.get(f"/v1/invitations/{invitation_id}",
                                             headers=inv.auth())).json()
                if view["sent_count"] == 2:
                    break
                await asyncio.sleep(0.2)

    assert view["last_sent_at"] is not None


async def test_expiry_reminder_and_a_deferred_window_with_two_scheduler_replicas(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        start = inv.clock.now
        short = await invite(inv, valid_until=(start + 2 * DAY).isoformat())
        remind = await invite(inv, valid_until=(start + 10 * DAY).isoformat())
        later = await invite(inv, valid_from=(start + DAY).isoformat(),
                             valid_until=(start + 20 * DAY).isoformat())
        many = [await invite(inv, valid_until=(start + DAY).isoformat()) for _ in range(30)]
        replicas = [
            InvitationScheduler(inv.service.store, inv.service.handlers, clock=inv.clock, batch=7)
            for _ in range(2)
        ]
        inv.clock.advance(DAY + timedelta(seconds=30))
        reports = await asyncio.gather(*(replica.run_once() for replica in replicas))
        inv.clock.advance(DAY)
        second = await asyncio.gather(*(replica.run_once() for replica in replicas))
        inv.clock.advance(6 * DAY)
        third = await asyncio.gather(*(replica.run_once() for replica in replicas))
        fourth = await asyncio.gather(*(replica.run_once() for replica in replicas))
        records = await events_on_kafka(
            kafka_bootstrap, INVITATION_TOPIC,
            until=lambda seen: bool(of_type(seen, "InvitationReminderDue", remind))
            and len([r for r in seen if r["key"] in many
                     and r["headers"]["ce_type"].endswith("InvitationExpired.v1")]) >= 30,
        )
        statuses = {
            row["invitation_id"]: row["status"]
            for row in await inv.service.store.pool.fetch("SELECT * FROM invitations")
        }

    # 30 due at once, split between two replicas: each expired exactly once
    assert sum(r.expired for r in reports) == 30
    assert sum(r.opened for r in reports) == 1  # the deferred window opened after a day
    assert sum(r.expired for r in second) == 1  # the two-day invitation
    assert sum(r.reminded for r in third) == 1  # 3 days before day 10
    assert sum(r.total for r in fourth) == 0  # nothing twice
    expired = [r for r in records if r["key"] in many
               and r["headers"]["ce_type"].endswith("InvitationExpired.v1")]
    assert sorted(r["key"] for r in expired) == sorted(many)
    assert len(of_type(records, "InvitationSendDue", later)) == 1
    assert of_type(records, "InvitationSendDue", later)[0]["value"]["invitation_code"]
    assert len(of_type(records, "InvitationReminderDue", remind)) == 1
    assert statuses[UUID(short)] == "expired" and statuses[UUID(remind)] == "pending"


async def test_bulk_upload_creates_good_rows_and_reports_bad_and_duplicate_ones(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        taken = email()
        existing = await inv.client.post("/v1/invitations", json={"invitee_email": taken},
                                         headers=inv.auth())
        good = [email() for _ in range(5)]
        csv = "invitee_email,platform_role,community_role,locale,greeting,valid_until\n" + "".join(
            f"{address},,community_contributor,de,Hallo!,\n" for address in good
        ) + f"{taken},,,,,\nnot-an-address,,,,,\n{good[0]},,,,,\nok@example.org,emperor,,,,\n"
        headers = inv.auth(**{"Idempotency-Key": "bulk-1", "Content-Type": "text/csv"})
        submitted = await inv.client.post("/v1/invitations/bulk", content=csv, headers=headers)
        again = await inv.client.post("/v1/invitations/bulk", content=csv, headers=headers)
        batch_id = submitted.json()["batch_id"]
        async with asyncio.timeout(60):
            while True:
                progress = (await inv.client.get(f"/v1/invitations/bulk/{batch_id}",
                                                 headers=inv.auth())).json()
                if progress["completed_at"] is not None:
                    break
                await asyncio.sleep(0.1)
        counts_only = (await inv.client.get(f"/v1/invitations/bulk/{batch_id}",
                                            params={"limit": 0}, headers=inv.auth())).json()
        page = (await inv.client.get(f"/v1/invitations/bulk/{batch_id}",
                                     params={"limit": 4, "after_row": 2},
                                     headers=inv.auth())).json()
        batches = await inv.service.store.pool.fetchval("SELECT count(*) FROM invitation_batches")
        leftover = await inv.service.store.pool.fetchval(
            "SELECT count(*) FROM invitation_batch_rows WHERE input IS NOT NULL"
        )
        created_ids = [r["invitation_id"] for r in progress["rows"] if r["outcome"] == "created"]
        records = await events_on_kafka(
            kafka_bootstrap, INVITATION_TOPIC,
            until=lambda seen: len([r for r in seen if r["key"] in created_ids]) == 5,
        )

    assert submitted.status_code == 202 and again.json() == submitted.json()
    assert batches == 1 and leftover == 0
    assert counts_only["rows"] == [] and counts_only["created"] == 5
    assert counts_only["next_after_row"] == 0
    assert [row["row"] for row in page["rows"]] == [3, 4, 5, 6]
    assert page["next_after_row"] == 6
    assert (progress["total"], progress["created"], progress["duplicate"],
            progress["invalid"]) == (9, 5, 2, 2)
    outcomes = {row["row"]: row for row in progress["rows"]}
    assert outcomes[6]["outcome"] == "duplicate"
    assert outcomes[6]["invitation_id"] == existing.json()["id"]
    assert outcomes[7]["outcome"] == "invalid" and "invitee_email" in outcomes[7]["reason"]
    assert outcomes[8]["outcome"] == "duplicate"  # the same address twice in one upload
    assert outcomes[9]["outcome"] == "invalid" and "platform_role" in outcomes[9]["reason"]
    created = [r for r in records if r["key"] in created_ids]
    assert {r["value"]["batch_id"] for r in created} == {batch_id}
    assert {r["value"]["roles"][0]["role"] for r in created} == {"community_contributor"}


async def test_erasing_the_person_who_accepted_makes_their_invitations_unreadable(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        address = email()
        invitation_id = await invite(inv, invitee_email=address, greeting="Dear Grace")
        user = uuid4()
        await publish(kafka_bootstrap, inv.settings.user_topic, user, UserRegistered(
            user_id=user, email="x", locale="en", via_invitation_id=UUID(invitation_id)))
        await status_of(inv, invitation_id, "accepted")
        reader = inv.auth(subject=uuid4(), permissions=["read_personal_data_keys"])
        before = await inv.client.get(f"/v1/internal/personal-data-keys/{invitation_id}",
                                      headers=reader)
        manager = await inv.client.get(f"/v1/internal/personal-data-keys/{invitation_id}",
                                       headers=inv.auth())
        await publish(kafka_bootstrap, inv.settings.user_topic, user, UserDeleted(user_id=user))
        async with asyncio.timeout(60):
            while await inv.service.store.pool.fetchval("SELECT count(*) FROM invitation_keys"):
                await asyncio.sleep(0.1)
        view = (await inv.client.get(f"/v1/invitations/{invitation_id}",
                                     headers=inv.auth())).json()
        url = await inv.client.get(f"/v1/invitations/{invitation_id}/url", headers=inv.auth())
        key = await inv.client.get(
            f"/v1/internal/personal-data-keys/{invitation_id}",
            headers=inv.auth(permissions=["read_personal_data_keys"]),
        )

    assert before.status_code == 200 and before.json()["key"]
    assert manager.status_code == 403  # keys are for services, not for people
    assert (view["invitee_email"], view["greeting"]) == ("[erased]", "[erased]")
    assert view["status"] == "accepted"  # the history stays; only the person is gone
    assert url.status_code == 410
    assert key.status_code == 404
