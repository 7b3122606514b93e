"""The delivery log and template previews over HTTP, as support staff use them; erasure shows."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from test_notifications_delivery import (
    MailServer,
    Topics,
    envelope,
    eventually,
    platform,
    registered,
    running_service,
    smtp_server,
)

from schemas.identity import UserReactivated, UserSuspended

pytestmark = pytest.mark.integration


async def test_support_staff_follow_a_person_s_mails_and_see_erased_after_erasure(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    mx = MailServer()
    async with smtp_server(mx) as port, running_service(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topics=kafka_topics,
        smtp_port=port,
    ) as service:
        auth = {"Authorization": f"Bearer {service.token}"}
        joined, user_id = registered(service, address="lina@example.org", name="Lina",
                                     locale="uk")
        suspended = envelope(UserSuspended(user_id=user_id, reason="Spam",
                                           until=datetime(2031, 1, 1, tzinfo=UTC)), str(user_id))
        # The suspended person's own token, issued before the suspension.
        own = service.signing.mint(sub=str(user_id), permissions=["view_platform_logs"],
                                   iat=int(time.time()) - 5)
        await service.publish(platform(), joined, suspended)

        async def sent() -> bool:
            rows = await service.pool_fetch(
                "SELECT status FROM deliveries WHERE cause_event_id = $1", suspended.id)
            return [row["status"] for row in rows] == ["sent"]

        await eventually(sent)
        listed = (await service.client.get("/v1/notifications",
                                           params={"person": str(user_id)}, headers=auth)).json()
        [item] = listed["items"]
        one = await service.client.get(f"/v1/notifications/{item['id']}", headers=auth)

        async def refused() -> bool:
            answer = await service.client.get(
                "/v1/templates", headers={"Authorization": f"Bearer {own}"})
            return answer.status_code == 401

        await eventually(refused, timeout=30)
        again = await service.client.post(f"/v1/notifications/{item['id']}/retry", headers=auth)

        # Erasure: identity destroys the person's key.
        del service.identity_keys.keys[str(user_id)]
        after = (await service.client.get(f"/v1/notifications/{item['id']}", headers=auth)).json()
        reactivated = envelope(UserReactivated(user_id=user_id), str(user_id))
        await service.publish(reactivated)

        async def cancelled() -> bool:
            rows = await service.pool_fetch(
                "SELECT status FROM deliveries WHERE cause_event_id = $1", reactivated.id)
            return [row["status"] for row in rows] == ["cancelled"]

        await eventually(cancelled)
        await asyncio.sleep(0.5)
        erased = (await service.client.get(
            "/v1/notifications", params={"person": str(user_id), "status": "cancelled"},
            headers=auth)).json()

    assert mx.received[0]["Subject"] == "Ваш обліковий запис Riverside Commons призупинено"
    assert item["template"] == "account_suspended" and item["status"] == "sent"
    assert item["recipient"] == "l***@example.org" and len(item["recipient_hash"]) == 64
    assert item["user_id"] == str(user_id) and item["attempts"] == 1
    assert one.status_code == 200 and one.json()["message_id"] == item["message_id"]
    assert again.status_code == 409  # only a failed mail can be sent again
    assert after["recipient"] == "[erased]"
    assert len(mx.received) == 1  # nothing goes to an erased address
    [gone] = erased["items"]
    assert gone["recipient"] == "[erased]" and gone["last_error"] == "personal data erased"


async def test_previews_paging_permissions_and_bad_input(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with smtp_server(MailServer()) as port, running_service(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topics=kafka_topics,
        smtp_port=port,
    ) as service:
        auth = {"Authorization": f"Bearer {service.token}"}
        people = [registered(service, address=f"p{n}@example.org", name=f"P{n}")
                  for n in range(3)]
        events = [event for joined, user_id in people for event in (
            joined, envelope(UserReactivated(user_id=user_id), str(user_id)))]
        await service.publish(platform(name="Harbour", time_zone="Asia/Tokyo"), *events)

        async def three() -> bool:
            rows = await service.pool_fetch("SELECT 1 FROM deliveries")
            return len(rows) == 3

        await eventually(three)
        first = (await service.client.get("/v1/notifications", params={"limit": 2},
                                          headers=auth)).json()
        second = (await service.client.get(
            "/v1/notifications", params={"limit": 2, "cursor": first["next_cursor"]},
            headers=auth)).json()
        templates = (await service.client.get("/v1/templates", headers=auth)).json()
        preview = (await service.client.get(
            "/v1/templates/invitation/preview", params={"locale": "es"}, headers=auth)).json()
        default = (await service.client.get(
            "/v1/templates/account_locked/preview", headers=auth)).json()
        no_token = await service.client.get("/v1/notifications")
        viewer_token = service.signing.mint(permissions=['view_platform_logs'])
        viewer = {"Authorization": f"Bearer {viewer_token}"}
        forbidden = await service.client.get("/v1/notifications", headers={
            "Authorization": f"Bearer {service.signing.mint(permissions=['read_person'])}"})
        not_allowed_retry = await service.client.post(
            f"/v1/notifications/{first['items'][0]['id']}/retry", headers=viewer)
        bad_cursor = await service.client.get("/v1/notifications", params={"cursor": "nope"},
                                              headers=auth)
        bad_id = await service.client.get("/v1/notifications/not-a-uuid", headers=auth)
        bad_locale = await service.client.get("/v1/templates/invitation/preview",
                                              params={"locale": "de"}, headers=auth)
        unknown = await service.client.get(f"/v1/notifications/{uuid.uuid4()}", headers=auth)
        unknown_template = await service.client.get("/v1/templates/nope/preview", headers=auth)

    assert len(first["items"]) == 2 and first["next_cursor"]
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert len(set(ids)) == 3
    assert len(templates["items"]) == 10
    assert preview["locale"] == "es" and preview["subject"] == "Te invitamos a unirte a Harbour"
    assert "(Asia/Tokyo)" in preview["text"] and "<html" in preview["html"]
    assert default["locale"] == "en" and "Harbour" in default["subject"]
    assert no_token.status_code == 401
    assert forbidden.status_code == 403 and "view_platform_logs" in forbidden.text
    assert not_allowed_retry.status_code == 403 and "manage_platform_users" in (
        not_allowed_retry.text)
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.text
    assert bad_id.status_code == 422 and "notification_id" in bad_id.text
    assert bad_locale.status_code == 422 and "locale" in bad_locale.text
    assert unknown.status_code == 404
    assert unknown_template.status_code == 422 and "name" in unknown_template.text
