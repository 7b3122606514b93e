"""The GDPR export through HTTP with identity and the audit service running for real on
PostgreSQL and Kafka: the person's events of every service, read from the audit log; a 503 with
Retry-After, and no UserDataExported, when the log cannot give them all; refused after erasure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from eventkit.envelope import Envelope
from eventkit.personal_data import ERASED
from eventkit.publisher import KafkaPublisher
from eventkit.registry import EventData
from guestlist.stack.ports import free_port
from schemas.invitations import InvitationAccepted, InvitationCreated
from services.identity.audit_testing import identity_with_audit
from services.identity.derived_keys import keyed_hash
from services.identity.settings import DEV_INVITATION_CODE_KEY
from services.identity.testing import (
    PASSWORD,
    bearer,
    events_on,
    make_admin,
    only,
    running_identity,
    sign_in,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit_database_url(pg_server: Any) -> AsyncIterator[str]:
    name = f"t_{uuid4().hex[:12]}"
    yield await pg_server.create_database(name)
    await pg_server.drop_database(name)


async def publish(kafka_bootstrap: str, subject: UUID, event: EventData) -> None:
    """An invitations event as that service writes it to its topic."""
    envelope = Envelope(id=uuid4(), type=str(event.event_type), subject=str(subject),
                        time=datetime.now(UTC), actor_id="system", sequence=1,
                        data_json=event.model_dump_json(), source="/guestlist/invitations")
    publisher = KafkaPublisher(kafka_bootstrap, client_id="identity-export-test")
    await publisher.start()
    try:
        await publisher.publish([envelope.to_kafka(event.topic)])
    finally:
        await publisher.stop()


async def until(check: Any, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_the_export_holds_the_persons_events_of_every_service_and_ends_with_erasure(
    database_url: str, audit_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with identity_with_audit(database_url, audit_database_url, kafka_bootstrap,
                                   tmp_path) as stack, \
            httpx.AsyncClient(base_url=stack.identity_url, timeout=60) as client:
        admin = await make_admin(stack.identity, client)
        # The invitations service invites a person: identity and audit both read the topic.
        invitation_id, address = uuid4(), f"lin-{uuid4().hex[:8]}@example.org"
        now = datetime.now(UTC)
        await publish(kafka_bootstrap, invitation_id, InvitationCreated(
            invitation_id=invitation_id, invitee_email=address, inviter_id=uuid4(),
            locale="en", valid_from=now - timedelta(hours=1), valid_until=now + timedelta(days=7),
            code_hash=keyed_hash(DEV_INVITATION_CODE_KEY.encode(), "LIN-CODE"),
        ))
        identity_db = stack.identity.state.identity.accounts.work.store.pool

        async def invitation_known() -> bool:
            return bool(await identity_db.fetchval(
                "SELECT count(*) FROM invitations WHERE invitation_id = $1", invitation_id))

        await until(invitation_known, "identity did not read the invitation")
        registered = await client.post("/v1/users", json={
            "email": address, "password": PASSWORD, "name": "Lin Wei",
            "invitation_code": "LIN-CODE"})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["user_id"]
        await publish(kafka_bootstrap, invitation_id, InvitationAccepted(
            invitation_id=invitation_id, user_id=UUID(user_id)))
        # ... and later the person invites someone else: the event names her as the inviter.
        sent_id = uuid4()
        await publish(kafka_bootstrap, sent_id, InvitationCreated(
            invitation_id=sent_id, invitee_email="bo@example.org", inviter_id=UUID(user_id),
            locale="en", valid_from=now, valid_until=now + timedelta(days=7),
            code_hash=keyed_hash(DEV_INVITATION_CODE_KEY.encode(), f"BO-{sent_id}"),
        ))
        signed = await sign_in(client, address)
        me = bearer(signed.json()["access_token"])
        assert (await client.get("/v1/me", headers={**me, "X-Purpose": "settings_page"})
                ).status_code == 200
        assert (await client.get(f"/v1/users/{user_id}",
                                 headers={**admin, "X-Purpose": "support_ticket"})
                ).status_code == 200
        audit_db = await asyncpg.connect(audit_database_url)
        try:
            async def invitations_logged() -> bool:
                return bool(await audit_db.fetchval(
                    "SELECT count(*) FROM audit_log WHERE ce_subject = $1 AND ce_type = $2",
                    str(invitation_id), "guestlist.invitations.InvitationAccepted.v1")
                    and await audit_db.fetchval(
                    "SELECT count(*) FROM audit_log WHERE ce_subject = $1", str(sent_id)))

            await until(invitations_logged, "audit did not log the invitations")
        finally:
            await audit_db.close()

        exported = await client.get("/v1/me/export", headers=me)
        anonymous = await client.get("/v1/me/export")
        user_events = await events_on(kafka_bootstrap, "identity.user", user_id,
                                      {"UserDataExported"})

        deleted = await client.request("DELETE", f"/v1/users/{user_id}", headers=admin,
                                       json={"reason": "erasure request"})
        after_erasure = await client.get("/v1/me/export", headers=me)

        # What the export is made from now reads [erased] (audit caches a key 30 s at most).
        timeline = stack.identity.state.identity.timeline

        async def erased_in_the_log() -> bool:
            entries = await timeline.timeline(user_id)
            first = next(e for e in entries if e.type.endswith("UserRegistered.v1"))
            return bool(first.data["email"] == ERASED)

        await until(erased_in_the_log, "the audit log still opens the address", within=90)

    assert anonymous.status_code == 401
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-disposition"] == (
        f'attachment; filename="guestlist-{user_id}.json"')
    document = exported.json()
    assert (document["profile"]["email"], document["profile"]["name"]) == (address, "Lin Wei")
    assert document["profile"]["status"] == "active"
    assert document["account"]["via_invitation_id"] == str(invitation_id)
    assert document["sessions"]["total"] == 1
    assert document["sessions"]["active"][0]["session_id"] == signed.json()["session_id"]
    assert document["timelines"] == [user_id, f"access-{user_id}", str(invitation_id)]
    events = document["events"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"].split(".")[2], []).append(event)
    assert [e["sequence"] for e in events] == sorted({e["sequence"] for e in events})
    assert {"UserRegistered", "RoleGranted", "LoginSucceeded", "PersonalDataViewed",
            "InvitationCreated", "InvitationAccepted"} <= set(by_type)
    assert by_type["UserRegistered"][0]["data"]["email"] == address  # opened by audit
    assert by_type["UserRegistered"][0]["data"]["via_invitation_id"] == str(invitation_id)
    received, sent = by_type["InvitationCreated"]
    assert received["subject"] == str(invitation_id)
    assert received["data"]["invitee_email"] == address
    # the invitation she sent is hers to see, the invitee's address is not
    assert (sent["subject"], sent["role"]) == (str(sent_id), "named")
    assert sent["data"]["inviter_id"] == user_id
    assert (sent["data"]["invitee_email"], sent["withheld"]) == ("[withheld]", ["invitee_email"])
    assert by_type["InvitationAccepted"][0]["data"]["user_id"] == user_id
    purposes = {e["data"]["purpose"] for e in by_type["PersonalDataViewed"]}
    assert {"settings_page", "support_ticket"} <= purposes
    assert "UserDataExported" not in by_type  # written once the document was ready

    assert only(user_events, "UserDataExported").data["requested_by"] == user_id
    assert deleted.status_code == 200, deleted.text
    assert after_erasure.status_code == 401


async def test_without_the_audit_log_the_export_is_a_503_with_retry_after_and_not_recorded(
    database_url: str, kafka_bootstrap: str
) -> None:
    nobody_listens = f"http://127.0.0.1:{free_port()}"
    async with running_identity(database_url, kafka_bootstrap,
                                audit_url=nobody_listens) as (client, app):
        admin = await make_admin(app, client)
        admin_id = (await client.get("/v1/me", headers=admin)).json()["user_id"]
        refused = await client.get("/v1/me/export", headers=admin)
        async with app.state.identity.accounts.work.store.transaction() as tx:
            types = [r.envelope.type for r in await tx.read_stream(admin_id)]

    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) > 0
    assert "audit log" in refused.json()["detail"]
    assert not any("UserDataExported" in t for t in types)


async def test_an_audit_log_that_does_not_hold_identitys_events_gives_no_partial_export(
    database_url: str, audit_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    # This audit service reads the invitations topic only: identity's events never reach it.
    async with identity_with_audit(database_url, audit_database_url, kafka_bootstrap, tmp_path,
                                   audited_topics=r"^invitations\.invitation$",
                                   export_audit_wait=1.0) as stack, \
            httpx.AsyncClient(base_url=stack.identity_url, timeout=60) as client:
        admin = await make_admin(stack.identity, client)
        admin_id = (await client.get("/v1/me", headers=admin)).json()["user_id"]
        refused = await client.get("/v1/me/export", headers=admin)
        async with stack.identity.state.identity.accounts.work.store.transaction() as tx:
            types = [r.envelope.type for r in await tx.read_stream(admin_id)]

    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "2"
    assert "does not hold" in refused.json()["detail"]
    assert not any("UserDataExported" in t for t in types)
