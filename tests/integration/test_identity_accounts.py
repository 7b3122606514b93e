"""Identity's account changes through HTTP on the real PostgreSQL, Kafka and SMTP: passwords,
timed suspension, deletion with key erasure, and role grants and revocations."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from eventkit.personal_data import ERASED, decrypt_data, is_encrypted, subject_of
from schemas.identity import UserRegistered
from services.identity.testing import (
    PASSWORD,
    event_token,
    events_on,
    make_admin,
    only,
    open_platform,
    register_active,
    running_identity,
    sign_in,
    signed_in,
)

pytestmark = pytest.mark.integration
NEW_PASSWORD = "a much longer and newer passphrase"


async def test_change_and_reset_password_end_sessions_and_only_the_new_password_works(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        await open_platform(client, await make_admin(app, client))
        user_id, address = await register_active(client, app)
        first = await sign_in(client, address)
        me = {"Authorization": f"Bearer {first.json()['access_token']}"}

        wrong = await client.post("/v1/me/password", headers=me, json={
            "current_password": "not my password at all", "new_password": NEW_PASSWORD})
        short = await client.post("/v1/me/password", headers=me, json={
            "current_password": PASSWORD, "new_password": "short"})
        same_as_email = await client.post("/v1/me/password", headers=me, json={
            "current_password": PASSWORD, "new_password": address.upper()})
        changed = await client.post("/v1/me/password", headers=me, json={
            "current_password": PASSWORD, "new_password": NEW_PASSWORD})
        new_password = await sign_in(client, address, NEW_PASSWORD)
        # Signed in within the second the change revoked every session: still a good token.
        fresh = await client.get("/v1/me", headers={
            "Authorization": f"Bearer {new_password.json()['access_token']}"})
        old_token = await client.get("/v1/me", headers=me)
        old_refresh = await client.post("/v1/sessions/refresh",
                                        json={"refresh_token": first.json()["refresh_token"]})
        old_password = await sign_in(client, address)

        unknown = await client.post("/v1/password-resets", json={"email": "no@example.org"})
        asked = await client.post("/v1/password-resets", json={"email": address.lower()})
        # The scheduler takes the request up and seals the token for the mailer on the event.
        token = await event_token(app, user_id, "reset_token")
        bad_token = await client.post("/v1/password-resets/confirm", json={
            "token": "made-up", "new_password": "yet another good passphrase"})
        reset = await client.post("/v1/password-resets/confirm", json={
            "token": token, "new_password": "yet another good passphrase"})
        reused = await client.post("/v1/password-resets/confirm", json={
            "token": token, "new_password": "and one more good passphrase"})
        after_reset = await sign_in(client, address, "yet another good passphrase")
        envelopes = await events_on(kafka_bootstrap, "identity.user", user_id, [
            "PasswordChanged", "PasswordChanged", "PasswordResetRequested",
            "SessionsRevoked", "SessionsRevoked"])

    assert wrong.status_code == 401 and wrong.json()["field"] == "current_password"
    assert short.status_code == 422 and short.json()["field"] == "new_password"
    assert same_as_email.status_code == 422 and same_as_email.json()["field"] == "new_password"
    assert changed.status_code == 204
    assert old_token.status_code == 401 and old_refresh.status_code == 401
    assert old_password.status_code == 401 and new_password.status_code == 201
    assert fresh.status_code == 200, fresh.text
    # The same answer whether or not the address has an account.
    assert unknown.status_code == asked.status_code == 202
    assert bad_token.status_code == 400 and bad_token.json()["field"] == "token"
    assert reset.status_code == 204
    assert reused.status_code == 400
    assert after_reset.status_code == 201
    changes = [p.data for p in envelopes if p.name == "PasswordChanged"]
    assert [c["via_reset"] for c in changes] == [False, True]
    causes = {p.data["cause"] for p in envelopes if p.name == "SessionsRevoked"}
    assert causes == {"password_changed"}
    requested = only(envelopes, "PasswordResetRequested")
    # The token travels sealed under a key of its own (not the person's), the address sealed.
    assert set(requested.data) == {"user_id", "expires_at", "reset_token", "email"}
    assert token not in requested.envelope.data_json
    assert is_encrypted(requested.data["reset_token"]) and is_encrypted(requested.data["email"])
    assert subject_of(requested.data["reset_token"]) != user_id
    assert subject_of(requested.data["email"]) == user_id


async def test_a_timed_suspension_refuses_sign_in_until_the_scheduler_reactivates_the_account(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap,
                                scheduler_interval=0.2) as (client, app):
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        user_id, address = await register_active(client, app)
        token = await signed_in(client, address)
        past = await client.post(f"/v1/users/{user_id}/suspend", headers=admin, json={
            "reason": "too early", "until": (datetime.now(UTC) - timedelta(hours=1)).isoformat()})
        naive = await client.post(f"/v1/users/{user_id}/suspend", headers=admin, json={
            "reason": "no zone", "until": "2030-01-01T00:00:00"})
        by_member = await client.post(f"/v1/users/{user_id}/suspend", headers=token,
                                      json={"reason": "myself"})
        until = datetime.now(UTC) + timedelta(seconds=4)
        suspended = await client.post(f"/v1/users/{user_id}/suspend", headers=admin, json={
            "reason": "cooling off", "until": until.isoformat()})
        again = await client.post(f"/v1/users/{user_id}/suspend", headers=admin,
                                  json={"reason": "twice"})
        refused = await sign_in(client, address)
        old_token = await client.get("/v1/me", headers=token)
        deadline = time.monotonic() + 60
        while (back := await sign_in(client, address)).status_code != 201:
            assert time.monotonic() < deadline, back.text
            await asyncio.sleep(0.2)
        back_at = datetime.now(UTC)
        envelopes = await events_on(kafka_bootstrap, "identity.user", user_id,
                                    {"UserSuspended", "UserReactivated", "SessionsRevoked"})

    assert past.status_code == 422 and past.json()["field"] == "until"
    assert naive.status_code == 422 and "until" in str(naive.json())
    assert by_member.status_code == 403
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    assert again.status_code == 409 and again.json()["type"].endswith("/invalid-transition")
    assert refused.status_code == 403 and refused.json()["reason"] == "account_suspended"
    assert old_token.status_code == 401
    assert back_at >= until
    suspension = only(envelopes, "UserSuspended")
    assert suspension.data["reason"] == "cooling off"
    assert datetime.fromisoformat(suspension.data["until"]) == until
    assert suspension.envelope.actor_id != "system"
    reactivation = only(envelopes, "UserReactivated")
    assert reactivation.data["reactivated_by"] is None
    assert reactivation.envelope.actor_id == "system"
    assert reactivation.envelope.sequence > suspension.envelope.sequence
    assert reactivation.envelope.time >= until


async def test_deleting_an_account_erases_its_key_so_every_copy_reads_erased(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        user_id, address = await register_active(client, app)
        token = await signed_in(client, address)
        before = await client.get(f"/v1/users/{user_id}", headers={**admin, "X-Purpose": "support"})
        no_reason = await client.request("DELETE", f"/v1/users/{user_id}", headers=admin)
        by_member = await client.request("DELETE", f"/v1/users/{user_id}", headers=token,
                                         json={"reason": "myself"})
        deleted = await client.request("DELETE", f"/v1/users/{user_id}", headers=admin,
                                       json={"reason": "asked by phone"})
        again = await client.request("DELETE", f"/v1/users/{user_id}", headers=admin,
                                     json={"reason": "asked by phone"})
        after = await client.get(f"/v1/users/{user_id}", headers={**admin, "X-Purpose": "support"})
        old_token = await client.get("/v1/me", headers=token)
        sign_in_after = await sign_in(client, address)
        reused_address = await client.post("/v1/users", json={
            "email": address, "password": PASSWORD})
        unknown = await client.request("DELETE", f"/v1/users/{uuid4()}", headers=admin,
                                       json={"reason": "nobody"})
        envelopes = await events_on(kafka_bootstrap, "identity.user", user_id,
                                    {"UserRegistered", "UserDeleted", "SessionsRevoked"})
        # The farewell address stays readable for the mailer (and only it) a while.
        farewell = await event_token(app, user_id, "email", skip=1)
        # What any reader of Kafka gets from the key service now: nothing.
        work = app.state.identity.accounts.work
        async with work.store.transaction() as tx:
            key = await work.data_keys.get(tx.connection, uuid4())
            gone = await work.data_keys.get(tx.connection, user_id)

    assert before.json()["email"] == address
    assert no_reason.status_code == 422
    assert by_member.status_code == 403
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    assert again.status_code == 409
    assert after.status_code == 200
    assert (after.json()["status"], after.json()["email"], after.json()["name"]) == (
        "deleted", ERASED, ERASED)
    assert after.json()["roles"] == [] and after.json()["permissions"] == []
    assert old_token.status_code == 401
    assert sign_in_after.status_code == 401
    assert reused_address.status_code == 201  # the address is free again
    assert unknown.status_code == 404
    assert key is None and gone is None
    removal = only(envelopes, "UserDeleted")
    assert set(removal.data) == {"user_id", "reason", "email"}
    assert removal.data["reason"] == "asked by phone"
    assert subject_of(removal.data["email"]) != user_id and farewell == address
    registered = only(envelopes, "UserRegistered")
    assert is_encrypted(registered.data["email"])

    class Erased:
        async def key_for(self, subject_id: str) -> bytes | None:
            return None

    opened = await decrypt_data(UserRegistered, registered.data, Erased())
    assert (opened["email"], opened["name"]) == (ERASED, ERASED)


async def test_role_grants_need_the_permissions_granted_and_revoking_ends_sessions(
    database_url: str, kafka_bootstrap: str
) -> None:
    community = str(uuid4())
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        member_id, member_address = await register_active(client, app, "Member")
        organizer_id, organizer_address = await register_active(client, app, "Org")
        member = await signed_in(client, member_address)

        def grant(role: str, scope: str, community_id: str | None = None) -> dict[str, object]:
            return {"role": role, "scope": scope, "community_id": community_id}

        no_permission = await client.post(f"/v1/users/{organizer_id}/roles", headers=member,
                                          json=grant("community_facilitator",
                                                     "community", community))
        made_organizer = await client.post(
            f"/v1/users/{organizer_id}/roles", headers=admin,
            json=grant("community_organizer", "community", community))
        organizer = await signed_in(client, organizer_address)
        manager_by_organizer = await client.post(
            f"/v1/users/{member_id}/roles", headers=organizer,
            json=grant("platform_manager", "platform"))
        beyond_own = await client.post(
            f"/v1/users/{member_id}/roles", headers=organizer,
            json=grant("community_legal_advisor", "community", community))
        other_community = await client.post(
            f"/v1/users/{member_id}/roles", headers=organizer,
            json=grant("community_facilitator", "community", str(uuid4())))
        facilitator = await client.post(
            f"/v1/users/{member_id}/roles", headers=organizer,
            json=grant("community_facilitator", "community", community))
        platform_role = await client.post(
            f"/v1/users/{member_id}/roles", headers=admin,
            json=grant("platform_tech_support", "platform"))
        wrong_scope = await client.post(
            f"/v1/users/{member_id}/roles", headers=admin,
            json=grant("platform_tech_support", "community", community))
        member_token = await signed_in(client, member_address)
        can_read = await client.get(f"/v1/users/{organizer_id}",
                                    headers={**member_token, "X-Purpose": "support"})
        revoked = await client.delete(
            f"/v1/users/{member_id}/roles/platform/platform_tech_support", headers=admin)
        revoked_twice = await client.delete(
            f"/v1/users/{member_id}/roles/platform/platform_tech_support", headers=admin)
        old_token = await client.get("/v1/me", headers=member_token)
        bad_role = await client.delete(f"/v1/users/{member_id}/roles/platform/emperor",
                                       headers=admin)
        member_token = await signed_in(client, member_address)
        cannot_read = await client.get(f"/v1/users/{organizer_id}",
                                       headers={**member_token, "X-Purpose": "support"})
        envelopes = await events_on(kafka_bootstrap, "identity.user", member_id,
                                    ["RoleGranted", "RoleGranted", "RoleGranted", "RoleRevoked",
                                     "SessionsRevoked"])

    assert no_permission.status_code == 403
    assert no_permission.json()["type"].endswith("/grant-refused")
    assert made_organizer.status_code == 201, made_organizer.text
    assert manager_by_organizer.status_code == 403
    assert beyond_own.status_code == 403 and "read_person" in beyond_own.json()["detail"]
    assert other_community.status_code == 403
    assert facilitator.status_code == 201
    assert platform_role.status_code == 201
    assert wrong_scope.status_code == 422
    assert wrong_scope.json()["type"].endswith("/validation-error")
    assert can_read.status_code == 200
    assert revoked.status_code == 200
    assert revoked_twice.status_code == 422
    assert old_token.status_code == 401
    assert bad_role.status_code == 422 and "role" in str(bad_role.json())
    assert cannot_read.status_code == 403
    grants = {p.data["role"]: p for p in envelopes if p.name == "RoleGranted"}
    assert grants["community_facilitator"].data["privilege_escalation"] is False
    assert grants["community_facilitator"].data["granted_by"] == organizer_id
    assert grants["community_facilitator"].envelope.actor_id == organizer_id
    assert grants["platform_tech_support"].data["privilege_escalation"] is True
    assert grants["platform_tech_support"].data["community_id"] is None
    removal = only(envelopes, "RoleRevoked")
    assert removal.data["role"] == "platform_tech_support"
    assert removal.data["revoked_by"] == grants["platform_tech_support"].data["granted_by"]
    assert [p.data["cause"] for p in envelopes if p.name == "SessionsRevoked"] == ["role_revoked"]
