"""What replicas share through PostgreSQL and Kafka: the lookup limit, the platform's name and
default locale from identity.platform, and sessions identity ended; on the real servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from schemas.identity import PlatformSettingsChanged, UserSuspended
from services.invitations.scheduler import InvitationScheduler
from services.invitations.testing import RunningInvitations, publish, running_invitations

pytestmark = pytest.mark.integration
PLATFORM = uuid4()
MINUTE = timedelta(minutes=1)


async def lookup(inv: RunningInvitations, code: str = "A" * 32) -> Any:
    return await inv.client.get("/v1/invitations/lookup", params={"code": code})


async def test_two_replicas_on_one_database_share_each_clients_lookup_budget(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(
        database_url, kafka_bootstrap, kafka_topics, lookup_rate_limit=3
    ) as one, running_invitations(
        database_url, kafka_bootstrap, kafka_topics, lookup_rate_limit=3
    ) as two:
        # Ahead of the real time: each replica's scheduler purged the windows before its own
        # clock's when it started, and must not take this one for an old window.
        start = (one.clock.now + timedelta(days=1)).replace(second=10, microsecond=0)
        two.clock.now = one.clock.now = start
        answers = [await lookup(replica) for replica in (one, two, one)]
        over_on_two = await lookup(two)
        over_on_one = await lookup(one)
        rows = await one.service.store.pool.fetch("SELECT * FROM lookup_windows")
        # the next window starts afresh on both
        for replica in (one, two):
            replica.clock.advance(timedelta(seconds=50))
        fresh = await lookup(two)
        purged = await InvitationScheduler(
            one.service.store, one.service.handlers, clock=one.clock,
            lookup_limit=one.service.lookup_limit,
        ).run_once()
        left = await one.service.store.pool.fetch("SELECT window_start FROM lookup_windows")

    assert [answer.status_code for answer in answers] == [404, 404, 404]
    assert over_on_two.status_code == over_on_one.status_code == 429
    assert over_on_two.headers["content-type"] == "application/problem+json"
    assert over_on_two.headers["retry-after"] == "50"
    assert over_on_one.json()["retry_after"] == 50
    # one row for the client, its address kept only as a keyed hash
    assert len(rows) == 1 and rows[0]["hits"] == 5
    assert "127.0.0.1" not in rows[0]["client_hash"] and "testclient" not in rows[0]["client_hash"]
    assert fresh.status_code == 404
    assert purged.purged_windows == 1 and purged.total == 0
    assert [row["window_start"] for row in left] == [start.replace(second=0) + MINUTE]


async def test_the_platforms_name_and_locale_come_from_identity_platform_once_it_speaks(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(
        database_url, kafka_bootstrap, kafka_topics, platform_name="Fallback Hall",
        platform_default_locale="fr",
    ) as inv:
        before = await inv.client.post(
            "/v1/invitations", json={"invitee_email": f"a-{uuid4().hex[:6]}@example.org"},
            headers=inv.auth(),
        )
        before_lookup = await lookup(inv, before.json()["code"])
        now = datetime.now(UTC)
        changed = PlatformSettingsChanged(
            platform_id=PLATFORM, name="Community Commons", requires_invitation=True,
            time_zone="Europe/Berlin", default_locale="de",
        )
        await publish(kafka_bootstrap, inv.settings.platform_topic, PLATFORM, changed, at=now)
        # an older description arriving later changes nothing
        older = changed.model_copy(update={"name": "Old Name", "default_locale": "es"})
        await publish(kafka_bootstrap, inv.settings.platform_topic, PLATFORM, older,
                      at=now - timedelta(hours=1))
        async with asyncio.timeout(60):
            while await inv.service.store.pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE consumer = 'invitations'"
            ) < 2:
                await asyncio.sleep(0.1)
        after_lookup = await lookup(inv, before.json()["code"])
        after = await inv.client.post(
            "/v1/invitations", json={"invitee_email": f"b-{uuid4().hex[:6]}@example.org"},
            headers=inv.auth(),
        )
        chosen = await inv.client.post(
            "/v1/invitations",
            json={"invitee_email": f"c-{uuid4().hex[:6]}@example.org", "locale": "uk"},
            headers=inv.auth(),
        )
        stored = await inv.service.store.pool.fetchrow("SELECT * FROM platform_settings")

    assert before_lookup.json()["platform_name"] == "Fallback Hall"
    assert before.json()["locale"] == "fr"
    assert after_lookup.json()["platform_name"] == "Community Commons"
    assert after.json()["locale"] == "de"
    assert chosen.json()["locale"] == "uk"
    assert stored["time_zone"] == "Europe/Berlin"


async def test_a_token_issued_before_identity_suspended_the_person_is_refused(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        token = {"Authorization": f"Bearer {inv.token()}"}
        before = await inv.client.get(f"/v1/invitations/{uuid4()}", headers=token)
        await asyncio.sleep(1.1)  # iat has whole seconds: the token is from an earlier one
        await publish(kafka_bootstrap, inv.settings.user_topic, inv.manager_id, UserSuspended(
            user_id=inv.manager_id, reason="left the organizing team", suspended_by=uuid4()))
        async with asyncio.timeout(30):
            while (after := await inv.client.get(f"/v1/invitations/{uuid4()}",
                                                 headers=token)).status_code != 401:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.1)  # past the revocation's own second
        fresh = await inv.client.get(f"/v1/invitations/{uuid4()}", headers=inv.auth())

    assert before.status_code == 404  # the token worked: no such invitation
    assert after.status_code == 401 and after.headers["content-type"] == "application/problem+json"
    assert fresh.status_code == 404  # a token signed after the suspension is identity's call
