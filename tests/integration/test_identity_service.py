"""Identity through HTTP on the real PostgreSQL and Kafka: registration, sessions, states,
roles, personal data, and a suspended person's token refused by another service."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from asgi_lifespan import LifespanManager
from fastapi import APIRouter

from eventkit.envelope import Envelope
from eventkit.http.app import create_service_app
from eventkit.http.auth import CurrentPrincipal
from eventkit.personal_data import is_encrypted, subject_of
from eventkit.runtime import ServiceRuntime
from schemas.invitations import InvitationCreated, InvitationRevoked
from services.identity.derived_keys import keyed_hash
from services.identity.settings import DEV_INVITATION_CODE_KEY
from services.identity.testing import (
    PASSWORD,
    events_on,
    make_admin,
    open_platform,
    register_active,
    running_identity,
    sign_in,
)
from services.projections.settings import ProjectionsSettings

pytestmark = pytest.mark.integration


async def envelopes_on(kafka_bootstrap: str, topic: str, subject: str, want: set[str]
                       ) -> list[Envelope]:
    return [p.envelope for p in await events_on(kafka_bootstrap, topic, subject, want)]


async def test_register_confirm_sign_in_and_the_events_on_kafka_in_cloudevents_form(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        admin = await make_admin(app, client)
        closed = await client.post("/v1/users", json={"email": "x@example.org",
                                                      "password": PASSWORD})
        assert closed.status_code == 422
        assert closed.json()["type"].endswith("/invitation-required")
        await open_platform(client, admin)
        user_id, address = await register_active(client, app)
        taken = await client.post("/v1/users", json={"email": address.upper(),
                                                     "password": PASSWORD})
        assert taken.status_code == 409 and taken.json()["field"] == "email"
        weak = await client.post("/v1/users", json={"email": "w@example.org", "password": "w"})
        assert weak.status_code == 422 and weak.json()["field"] == "password"

        tokens = await sign_in(client, address.lower())
        assert tokens.status_code == 201, tokens.text
        bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        me = await client.get("/v1/me", headers=bearer)
        assert me.status_code == 200, me.text
        assert (me.json()["email"], me.json()["status"]) == (address, "active")
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [k["alg"] for k in jwks["keys"]] == ["EdDSA"]

        # Refresh rotates; presenting the old one again ends the session.
        first = tokens.json()["refresh_token"]
        second = await client.post("/v1/sessions/refresh", json={"refresh_token": first})
        assert second.status_code == 200
        reused = await client.post("/v1/sessions/refresh", json={"refresh_token": first})
        assert reused.status_code == 401
        after = await client.post("/v1/sessions/refresh",
                                  json={"refresh_token": second.json()["refresh_token"]})
        assert after.status_code == 401

        envelopes = await envelopes_on(kafka_bootstrap, "identity.user", user_id,
                                    {"UserRegistered", "UserEmailConfirmed", "RoleGranted",
                                     "LoginSucceeded", "SessionsRevoked"})
        registered = next(e for e in envelopes if e.type == "guestlist.identity.UserRegistered.v1")
        data = json.loads(registered.data_json)
        assert is_encrypted(data["email"]) and is_encrypted(data["name"])
        # The confirmation token is sealed under a delivery key, not the person's key.
        assert is_encrypted(data["confirmation_token"])
        assert subject_of(data["confirmation_token"]) != user_id
        assert registered.source == "/guestlist/identity" and registered.sequence == 1
        assert registered.actor_id == user_id
        revoked = next(e for e in envelopes if e.type == "guestlist.identity.SessionsRevoked.v1")
        assert json.loads(revoked.data_json)["cause"] == "refresh_token_reused"
        viewed = await envelopes_on(kafka_bootstrap, "identity.access", f"access-{user_id}",
                                 {"PersonalDataViewed"})
        assert json.loads(viewed[0].data_json)["purpose"] == "self_service"


async def test_five_wrong_passwords_lock_the_account_and_answers_do_not_reveal_accounts(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        user_id, address = await register_active(client, app)
        unknown = await sign_in(client, "nobody@example.org")
        wrong = [await sign_in(client, address, "wrong password!!") for _ in range(5)]
        assert unknown.status_code == 401
        assert {w.status_code for w in wrong} == {401}
        assert {w.json()["type"] for w in wrong} == {unknown.json()["type"]}
        locked = await sign_in(client, address)
        assert locked.status_code == 403 and locked.json()["reason"] == "account_locked"
        envelopes = await envelopes_on(kafka_bootstrap, "identity.user", user_id,
                                    {"LoginFailed", "UserLockedOut"})
        failed = [json.loads(e.data_json) for e in envelopes if "LoginFailed" in e.type]
        assert failed[0]["client_address_hash"] == keyed_hash(
            app.state.identity.accounts.work.keys.client_address, "203.0.113.7")


async def test_invitation_codes_come_from_kafka_and_grant_their_roles(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        now = datetime.now(UTC)
        invitee = f"grace-{uuid4().hex[:6]}@example.org"
        good, revoked = InvitationCreated(
            invitation_id=uuid4(), invitee_email=invitee, inviter_id=uuid4(),
            roles=({"role": "platform_developer", "scope": "platform"},),
            locale="en", valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=9),
            code_hash=keyed_hash(DEV_INVITATION_CODE_KEY.encode(), "GOOD-CODE"),
        ), InvitationCreated(
            invitation_id=uuid4(), invitee_email=invitee, inviter_id=uuid4(), locale="en",
            valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=9),
            code_hash=keyed_hash(DEV_INVITATION_CODE_KEY.encode(), "REVOKED-CODE"),
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for event, subject in ((good, good.invitation_id), (revoked, revoked.invitation_id),
                                   (InvitationRevoked(invitation_id=revoked.invitation_id,
                                                      revoked_by=uuid4()), revoked.invitation_id)):
                envelope = Envelope(
                    id=uuid4(), type=str(event.event_type), subject=str(subject),
                    time=now, actor_id="system", sequence=1,
                    data_json=event.model_dump_json(), source="/guestlist/invitations",
                )
                record = envelope.to_kafka(event.topic)
                await producer.send_and_wait(record.topic, record.value, key=record.key,
                                             headers=record.headers)
        finally:
            await producer.stop()
        pool = app.state.identity.accounts.work.store.pool
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT count(*) FROM invitations WHERE status = 'revoked'") < 1:
            assert time.monotonic() < deadline, "the invitations were not consumed"
            await asyncio.sleep(0.1)

        for code, problem in (("NOPE", "invitation-unknown"),
                              ("REVOKED-CODE", "invitation-revoked")):
            answer = await client.post("/v1/users", json={
                "email": invitee, "password": PASSWORD, "invitation_code": code})
            assert answer.json()["type"].endswith(problem), answer.text
        answer = await client.post("/v1/users", json={
            "email": invitee, "password": PASSWORD, "invitation_code": "GOOD-CODE"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "active"
        used = await client.post("/v1/users", json={
            "email": "other@example.org", "password": PASSWORD, "invitation_code": "GOOD-CODE"})
        assert used.json()["type"].endswith("invitation-used")
        tokens = await sign_in(client, invitee)
        assert tokens.status_code == 201
        user_id = answer.json()["user_id"]
        envelopes = await envelopes_on(kafka_bootstrap, "identity.user", user_id,
                                    {"UserRegistered", "RoleGranted"})
        grants = [json.loads(e.data_json) for e in envelopes if "RoleGranted" in e.type]
        developer = next(g for g in grants if g["role"] == "platform_developer")
        assert developer["via_invitation_id"] == str(good.invitation_id)
        assert developer["privilege_escalation"] is True


async def test_a_suspended_persons_token_is_refused_by_another_service_within_a_second(
    database_url: str, kafka_bootstrap: str, pg_server: Any
) -> None:
    other_db = await pg_server.create_database(f"t_{uuid4().hex[:12]}")
    async with running_identity(database_url, kafka_bootstrap) as (client, app):
        admin = await make_admin(app, client)
        await open_platform(client, admin)
        user_id, address = await register_active(client, app)
        token = (await sign_in(client, address)).json()["access_token"]

        # Another service: verifies identity's tokens offline, learns revocations from Kafka
        # through its runtime, which every service has (nothing to opt into).
        settings = ProjectionsSettings(database_url=other_db, kafka_bootstrap=kafka_bootstrap)
        runtime = ServiceRuntime(settings)
        router = APIRouter()

        @router.get("/v1/whoami")
        async def whoami(principal: CurrentPrincipal) -> dict[str, str]:
            return {"sub": principal.subject}

        other = create_service_app(settings, routers=[router], lifespan=runtime.lifespan,
                                   runtime=runtime, readiness_checks=runtime.readiness_checks())
        identity_transport = httpx.ASGITransport(app=app)
        other.state.token_verifier.keys._client = httpx.AsyncClient(
            transport=identity_transport, base_url="http://identity")
        other.state.token_verifier.keys.url = "http://identity/.well-known/jwks.json"
        async with LifespanManager(other, startup_timeout=120) as manager, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://other"
        ) as other_client:
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await other_client.get("/v1/whoami", headers=bearer)).status_code == 200
            # Wait until the revocation consumer has caught up with the topic.
            deadline = time.monotonic() + 60
            while True:
                ready = (await other_client.get("/readyz")).json()
                consumers = [c for c in ready["checks"] if c["name"].startswith("consumer")]
                if consumers and all(c["ok"] for c in consumers):
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # group assignment settled

            suspended_at = time.monotonic()
            answer = await client.post(f"/v1/users/{user_id}/suspend", headers=admin,
                                       json={"reason": "abuse report"})
            assert answer.status_code == 200, answer.text
            while True:
                seen = await other_client.get("/v1/whoami", headers=bearer)
                if seen.status_code == 401:
                    break
                await asyncio.sleep(0.02)
                assert time.monotonic() - suspended_at < 5
            elapsed = time.monotonic() - suspended_at
        # Identity itself refuses the token at once.
        assert (await client.get("/v1/me", headers=bearer)).status_code == 401
    assert elapsed < 1.0, f"refused only after {elapsed:.2f}s"
    await pg_server.drop_database(other_db.rsplit("/", 1)[1])
