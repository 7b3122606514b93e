"""The invitations API through HTTP on the real PostgreSQL and Kafka."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from eventkit.personal_data import decrypt_value, is_encrypted
from services.invitations.testing import (
    INVITATION_TOPIC,
    events_on_kafka,
    of_type,
    running_invitations,
)

pytestmark = pytest.mark.integration


def email() -> str:
    return f"ada-{uuid4().hex[:8]}@example.org"


async def test_create_then_read_show_the_url_again_and_revoke_each_as_an_event_on_kafka(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        address = email()
        created = await inv.client.post(
            "/v1/invitations",
            json={"invitee_email": address, "platform_role": "platform_developer",
                  "greeting": "Welcome aboard!", "locale": "de"},
            headers=inv.auth(),
        )
        assert created.status_code == 201, created.text
        body = created.json()
        invitation_id, code = body["id"], body["code"]
        assert body["status"] == "pending" and len(code) == 32
        assert body["url"].endswith(f"?code={code}")
        assert body["inviter_id"] == str(inv.manager_id)
        assert body["version"] == 1 and body["position"].startswith("p1.")
        assert body["roles"] == [{"role": "platform_developer", "scope": "platform",
                                  "community_id": None}]
        assert created.headers["location"] == f"/v1/invitations/{invitation_id}"

        shown = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth())
        url = await inv.client.get(f"/v1/invitations/{invitation_id}/url", headers=inv.auth())
        public = await inv.client.get("/v1/invitations/lookup", params={"code": code})
        revoked = await inv.client.post(
            f"/v1/invitations/{invitation_id}/revoke", json={"reason": "wrong address"},
            headers=inv.auth(),
        )
        again = await inv.client.delete(f"/v1/invitations/{invitation_id}", headers=inv.auth())
        after = await inv.client.get(f"/v1/invitations/{invitation_id}", headers=inv.auth())
        async with inv.service.store.transaction() as tx:
            key = await inv.service.handlers.keys.get(tx.connection, invitation_id)
        records = await events_on_kafka(
            kafka_bootstrap, INVITATION_TOPIC,
            until=lambda seen: len(of_type(seen, "InvitationRevoked", invitation_id)) == 1,
        )

    assert shown.status_code == 200
    view = shown.json()
    assert (view["status"], view["invitee_email"], view["greeting"]) == (
        "pending", address, "Welcome aboard!"
    )
    assert view["inviter_id"] == str(inv.manager_id) and view["sent_count"] == 0
    assert url.status_code == 200 and url.json()["code"] == code
    assert public.status_code == 200
    assert public.json()["greeting"] == "Welcome aboard!" and public.json()["locale"] == "de"
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert again.status_code == 409
    assert again.json()["type"].endswith("/invitation-not-pending")
    assert after.json()["status"] == "revoked"
    # the code is a secret: no line the service logs carries it
    service_lines = [r.getMessage() + str(r.__dict__.get("msg")) for r in caplog.records
                     if not r.name.startswith("httpx")]
    assert service_lines and not any(code in line for line in service_lines)

    mine = [r for r in records if r["key"] == invitation_id]
    assert [r["headers"]["ce_type"].split(".")[2] for r in mine] == [
        "InvitationCreated", "InvitationUrlViewed", "InvitationRevoked"
    ]
    first = mine[0]
    assert first["headers"]["ce_specversion"] == "1.0"
    assert first["headers"]["ce_source"] == "/guestlist/invitations"
    assert first["headers"]["ce_subject"] == invitation_id
    assert first["headers"]["ce_actorid"] == str(inv.manager_id)
    assert first["headers"]["ce_sequence"] == "1"
    assert first["headers"]["content-type"] == "application/json"
    data = first["value"]
    # personal data and the code travel encrypted under the invitation's key
    raw = json.dumps(data)
    assert address not in raw and code not in raw and "Welcome aboard" not in raw
    assert is_encrypted(data["invitee_email"]) and is_encrypted(data["invitation_code"])
    assert key is not None
    assert decrypt_value(data["invitation_code"], key=key) == code
    assert decrypt_value(data["invitee_email"], key=key) == address
    assert mine[1]["value"]["viewed_by"] == str(inv.manager_id)
    assert mine[2]["value"]["reason"] == "wrong address"


async def test_a_second_pending_invitation_for_an_address_is_a_409_naming_the_first(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        address = email()
        first = await inv.client.post("/v1/invitations", json={"invitee_email": address},
                                      headers=inv.auth())
        second = await inv.client.post(
            "/v1/invitations", json={"invitee_email": address.upper()}, headers=inv.auth()
        )
        await inv.client.delete(f"/v1/invitations/{first.json()['id']}", headers=inv.auth())
        third = await inv.client.post("/v1/invitations", json={"invitee_email": address},
                                      headers=inv.auth())

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["existing_invitation_id"] == first.json()["id"]
    assert third.status_code == 201  # once revoked, the address can be invited again


async def test_the_same_idempotency_key_creates_once_and_answers_the_same(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        request = {"invitee_email": email()}
        headers = inv.auth(**{"Idempotency-Key": "invite-1"})
        first = await inv.client.post("/v1/invitations", json=request, headers=headers)
        retry = await inv.client.post("/v1/invitations", json=request, headers=headers)
        count = await inv.service.store.pool.fetchval("SELECT count(*) FROM invitations")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert count == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"invitee_email": "not-an-address"}, 422, "invitee_email"),
        ({"invitee_email": "a@example.org", "platform_role": "emperor"}, 422, "platform_role"),
        ({"invitee_email": "a@example.org", "valid_until": "2020-01-01T00:00:00Z"}, 422,
         "valid_until"),
        ({"invitee_email": "a@example.org", "valid_from": "2030-01-01T00:00:00Z",
          "valid_until": "2031-06-01T00:00:00Z"}, 422, "valid_until"),
        ({"invitee_email": "a@example.org", "platform_role": "platform_manager"}, 403,
         "platform_role"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any,
    body: dict[str, Any], status: int, field: str,
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        # an organizer who may invite, but holds only the community organizer's permissions
        organizer = ["manage_invitations", "view_community", "post_in_community"]
        answer = await inv.client.post(
            "/v1/invitations", json=body, headers=inv.auth(permissions=organizer)
        )

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in json.dumps(answer.json())


async def test_without_manage_invitations_nothing_is_created(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        anonymous = await inv.client.post("/v1/invitations", json={"invitee_email": email()})
        member = await inv.client.post(
            "/v1/invitations", json={"invitee_email": email()},
            headers=inv.auth(permissions=["view_community"]),
        )
        count = await inv.service.store.pool.fetchval("SELECT count(*) FROM invitations")

    assert (anonymous.status_code, member.status_code, count) == (401, 403, 0)


async def test_lookup_answers_unknown_and_malformed_codes_alike_and_limits_each_client(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(
        database_url, kafka_bootstrap, kafka_topics, lookup_rate_limit=3
    ) as inv:
        unknown = await inv.client.get("/v1/invitations/lookup", params={"code": "A" * 32})
        malformed = await inv.client.get("/v1/invitations/lookup", params={"code": "x'--"})
        await inv.client.get("/v1/invitations/lookup", params={"code": "B" * 32})
        limited = await inv.client.get("/v1/invitations/lookup", params={"code": "C" * 32})

    assert unknown.status_code == malformed.status_code == 404
    assert unknown.json()["detail"] == malformed.json()["detail"]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_resend_is_throttled_per_invitation_and_per_inviter(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(
        database_url, kafka_bootstrap, kafka_topics, inviter_send_limit=2
    ) as inv:
        ids = []
        for _ in range(3):
            answer = await inv.client.post("/v1/invitations", json={"invitee_email": email()},
                                           headers=inv.auth())
            ids.append(answer.json()["id"])
        too_soon = await inv.client.post(f"/v1/invitations/{ids[0]}/resend", headers=inv.auth())
        inv.clock.advance(timedelta(minutes=15))
        first = await inv.client.post(f"/v1/invitations/{ids[0]}/resend", headers=inv.auth())
        second = await inv.client.post(f"/v1/invitations/{ids[1]}/resend", headers=inv.auth())
        third = await inv.client.post(f"/v1/invitations/{ids[2]}/resend", headers=inv.auth())
        other = await inv.client.post(f"/v1/invitations/{ids[2]}/resend",
                                      headers=inv.auth(subject=uuid4()))
        inv.clock.advance(timedelta(minutes=15))
        later = await inv.client.post(f"/v1/invitations/{ids[1]}/resend", headers=inv.auth())

    assert too_soon.status_code == 429
    assert 890 <= int(too_soon.headers["retry-after"]) <= 900
    assert first.status_code == second.status_code == 200
    assert first.json()["version"] == 2
    assert third.status_code == 429 and "2 invitations" in third.json()["detail"]
    assert other.status_code == 200  # the limit is per inviter
    assert later.status_code == 200
