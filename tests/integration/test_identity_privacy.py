"""Identity's personal data through HTTP on the real PostgreSQL and Kafka: audited reads and
updates, the self-service deletion request, signing-key rotation, and the internal key endpoint
as another service uses it (``HttpKeyResolver`` over a real port). The data export, which needs
the audit service running too, is in ``test_identity_export_across_services.py``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import jwt
import pytest

from eventkit.personal_data import (
    ERASED,
    HttpKeyResolver,
    KeyUnavailable,
    ServiceCredentials,
    decrypt_data,
    is_encrypted,
)
from guestlist.stack.smtp_sink import SmtpSink
from schemas.identity import UserProfileUpdated, UserRegistered
from services.identity.handlers import service_subject
from services.identity.testing import (
    SERVICE_CLIENT,
    events_on,
    make_admin,
    only,
    open_platform,
    register_active,
    running_identity,
    serving_identity,
    sign_in,
    signed_in,
)

pytestmark = pytest.mark.integration


async def user_id_of(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    answer = await client.get("/v1/me", headers=headers)
    assert answer.status_code == 200, answer.text
    user_id: str = answer.json()["user_id"]
    return user_id


async def test_staff_read_and_update_a_profile_each_read_recorded_with_its_purpose(
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with running_identity(database_url, kafka_bootstrap,
                                smtp_port=smtp_sink.port) as (client, app):
        admin = await make_admin(app, client)
        admin_id = await user_id_of(client, admin)
        await open_platform(client, admin)
        user_id, address = await register_active(client, app, "Ada Lovelace")
        member = await signed_in(client, address)
        path = f"/v1/users/{user_id}"

        no_purpose = await client.get(path, headers=admin)
        bad_purpose = await client.get(path, headers={**admin, "X-Purpose": "Just Looking!"})
        by_member = await client.get(path, headers={**member, "X-Purpose": "curiosity"})
        unknown = await client.get(f"/v1/users/{uuid4()}",
                                   headers={**admin, "X-Purpose": "support_ticket"})
        read = await client.get(path, headers={**admin, "X-Purpose": "support_ticket"})
        patched = await client.patch(path, headers=admin,
                                     json={"name": "Augusta Ada King", "locale": "fr"})
        bad_locale = await client.patch(path, headers=admin, json={"locale": "xx"})
        not_allowed = await client.patch(path, headers=admin, json={"email": "x@example.org"})
        patch_by_member = await client.patch(path, headers=member, json={"name": "Me"})
        self_patch = await client.patch("/v1/me", headers=member, json={"name": "Countess"})
        after = await client.get(path, headers={**admin, "X-Purpose": "support_ticket"})
        viewed = await events_on(kafka_bootstrap, "identity.access", f"access-{user_id}",
                                 ["PersonalDataViewed", "PersonalDataViewed"])
        updates = await events_on(kafka_bootstrap, "identity.user", user_id,
                                  ["UserProfileUpdated", "UserProfileUpdated"])

    assert no_purpose.status_code == 400 and no_purpose.json()["field"] == "X-Purpose"
    assert bad_purpose.status_code == 422 and "X-Purpose" in bad_purpose.json()["detail"]
    assert by_member.status_code == 403
    assert unknown.status_code == 404
    assert read.status_code == 200, read.text
    shown = read.json()
    assert (shown["email"], shown["name"], shown["status"]) == (address, "Ada Lovelace", "active")
    assert {"role": "community_member", "scope": "community"}.items() <= shown["roles"][0].items()
    assert patched.status_code == 200 and patched.json()["version"] > 0
    assert bad_locale.status_code == 422 and "locale" in bad_locale.json()["detail"]
    assert not_allowed.status_code == 422 and "email" in not_allowed.json()["detail"]
    assert patch_by_member.status_code == 403
    assert self_patch.status_code == 200
    assert (after.json()["name"], after.json()["locale"]) == ("Countess", "fr")

    reads = [p for p in viewed if p.envelope.actor_id == admin_id]
    assert len(reads) == 2  # the two answered reads; refused ones show nothing
    first = reads[0]
    assert first.envelope.type == "guestlist.identity.PersonalDataViewed.v1"
    assert first.key == first.envelope.subject == f"access-{user_id}"
    assert first.data["subject_id"] == user_id and first.data["actor_id"] == admin_id
    assert first.data["purpose"] == "support_ticket"
    assert first.data["endpoint"] == "GET /v1/users/{user_id}"
    assert set(first.data["fields"]) == {"email", "name", "locale"}

    changes = [p for p in updates if p.name == "UserProfileUpdated"]
    assert [p.envelope.actor_id for p in changes] == [admin_id, user_id]
    assert is_encrypted(changes[0].data["name"]) and changes[0].data["locale"] == "fr"


async def test_a_person_asks_for_deletion_which_the_scheduler_carries_out(
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with running_identity(database_url, kafka_bootstrap, smtp_port=smtp_sink.port,
                                deletion_grace=timedelta(seconds=3),
                                scheduler_interval=0.2) as (client, app):
        await open_platform(client, await make_admin(app, client))
        user_id, address = await register_active(client, app, "Grace Hopper")
        me = await signed_in(client, address)
        anonymous = await client.post("/v1/me/deletion-request")
        asked_at = datetime.now(UTC)
        requested = await client.post("/v1/me/deletion-request", headers=me)
        still_there = await client.get("/v1/me", headers=me)
        deadline = time.monotonic() + 60
        while (gone := await sign_in(client, address)).status_code != 401:
            assert time.monotonic() < deadline, gone.text
            await asyncio.sleep(0.2)
        after = await client.get("/v1/me", headers=me)
        user_events = await events_on(kafka_bootstrap, "identity.user", user_id, {
            "UserDeletionRequested", "UserDeleted"})

    assert anonymous.status_code == 401
    assert requested.status_code == 202
    delete_after = datetime.fromisoformat(requested.json()["delete_after"])
    assert asked_at + timedelta(seconds=2) < delete_after < asked_at + timedelta(seconds=30)
    assert still_there.status_code == 200  # nothing happens before the grace period ends
    assert after.status_code == 401

    assert only(user_events, "UserDeletionRequested").envelope.actor_id == user_id
    deletion = only(user_events, "UserDeleted")
    assert deletion.envelope.actor_id == "system"
    assert deletion.envelope.time >= delete_after


async def test_rotated_signing_keys_stay_published_so_earlier_tokens_keep_working(
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with running_identity(database_url, kafka_bootstrap, smtp_port=smtp_sink.port,
                                signing_key_rotation=timedelta(seconds=2),
                                scheduler_interval=0.05) as (client, app):
        admin = await make_admin(app, client)
        first_kid = jwt.get_unverified_header(admin["Authorization"].split()[1])["kid"]
        before = (await client.get("/.well-known/jwks.json")).json()["keys"]
        deadline = time.monotonic() + 60
        while len(keys := (await client.get("/.well-known/jwks.json")).json()["keys"]) < 2:
            assert time.monotonic() < deadline, keys
            await asyncio.sleep(0.1)
        old_token_works = await client.get("/v1/platform/settings", headers=admin)
        admin_again = await make_admin(app, client)
        second_kid = jwt.get_unverified_header(admin_again["Authorization"].split()[1])["kid"]
        new_token_works = await client.get("/v1/platform/settings", headers=admin_again)
        latest = (await client.get("/.well-known/jwks.json")).json()["keys"]

    assert [k["kid"] for k in before] == [first_kid]
    assert first_kid in {k["kid"] for k in keys}
    assert second_kid != first_kid
    assert {first_kid, second_kid} <= {k["kid"] for k in latest}
    assert {k["alg"] for k in latest} == {"EdDSA"}
    assert all("d" not in k for k in latest)  # public halves only
    assert old_token_works.status_code == 200
    assert new_token_works.status_code == 200


async def test_another_service_opens_personal_data_with_keys_from_the_internal_endpoint(
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    client_id, secret = SERVICE_CLIENT
    async with serving_identity(database_url, kafka_bootstrap,
                                smtp_port=smtp_sink.port) as (base_url, app), \
            httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        user_id, address = await register_active(client, app, "Hedy Lamarr")
        registered = only(await events_on(kafka_bootstrap, "identity.user", user_id,
                                          {"UserRegistered"}), "UserRegistered")

        def resolver(client_secret: str, cache_seconds: float = 0.5) -> HttpKeyResolver:
            credentials = ServiceCredentials(
                f"{base_url}/v1/service-tokens", client_id=client_id,
                client_secret=client_secret, client=client)
            return HttpKeyResolver(base_url, client=client, credentials=credentials,
                                   purpose="audit_export", cache_seconds=cache_seconds)

        opened = await decrypt_data(UserRegistered, registered.data, resolver(secret))
        with pytest.raises(KeyUnavailable):
            await resolver("not-the-right-secret-at-all").key_for(user_id)
        person_asks = await client.get(f"/v1/internal/personal-data-keys/{user_id}",
                                       headers=admin)
        no_token = await client.get(f"/v1/internal/personal-data-keys/{user_id}")
        bad_client = await client.post("/v1/service-tokens",
                                       json={"client_id": "Audit!", "client_secret": "x"})
        erasing = resolver(secret)
        assert await erasing.key_for(user_id) is not None
        deleted = await client.request("DELETE", f"/v1/users/{user_id}", headers=admin,
                                       json={"reason": "erasure request"})
        await asyncio.sleep(0.6)  # the resolver's cache time
        after = await decrypt_data(UserRegistered, registered.data, erasing)
        profile = await decrypt_data(UserProfileUpdated, {"name": registered.data["name"],
                                                          "locale": "en"}, erasing)
        key_reads = await events_on(kafka_bootstrap, "identity.access", f"access-{user_id}",
                                    ["PersonalDataViewed", "PersonalDataViewed"])

    assert (opened["email"], opened["name"]) == (address, "Hedy Lamarr")
    assert person_asks.status_code == 403 and no_token.status_code == 401
    assert bad_client.status_code == 422 and "client_id" in bad_client.json()["detail"]
    assert deleted.status_code == 200
    assert (after["email"], after["name"], profile["name"]) == (ERASED, ERASED, ERASED)
    by_service = [p for p in key_reads
                  if p.envelope.actor_id == str(service_subject(client_id))]
    assert len(by_service) == 2
    assert by_service[0].data["fields"] == ["data_key"]
    assert by_service[0].data["purpose"] == "audit_export"
    assert UUID(by_service[0].data["subject_id"]) == UUID(user_id)
