"""Identity's account mails go out through the notifications service, end to end.

Identity runs on a real port (notifications fetches keys from it over HTTP with
its service token), notifications on its own database, both on the session's
Kafka, and the mail lands in the aiosmtpd sink. The confirmation and reset
tokens and the farewell address travel sealed under delivery keys: only the
notifications client may fetch those keys, and only until they expire.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from eventkit.personal_data import ERASED, subject_of
from guestlist.stack.kafka import create_topics
from guestlist.stack.smtp_sink import SmtpSink
from services.identity.testing import (
    MAILER_CLIENT,
    PASSWORD,
    SERVICE_CLIENT,
    bearer,
    mailed_token,
    make_admin,
    open_platform,
    register_active,
    serving_identity,
    sign_in,
)
from services.notifications.bootstrap import build_app
from services.notifications.settings import NotificationsSettings

pytestmark = pytest.mark.integration
TIMEOUT = 90.0
NEW_PASSWORD = "a fresh and long passphrase"


@dataclass
class Stack:
    identity_url: str
    identity_app: FastAPI
    identity: httpx.AsyncClient
    notifications: httpx.AsyncClient
    sink: SmtpSink
    admin: dict[str, str]

    async def key_answer(self, client: tuple[str, str], key_id: str) -> httpx.Response:
        """The key endpoint's answer for ``key_id`` to the service client ``client``."""
        token = await self.identity.post("/v1/service-tokens", json={
            "client_id": client[0], "client_secret": client[1]})
        assert token.status_code == 200, token.text
        return await self.identity.get(
            f"/v1/internal/personal-data-keys/{key_id}",
            headers={**bearer(token.json()["access_token"]), "X-Purpose": "test"})

    async def deliveries(self, user_id: str) -> list[dict[str, Any]]:
        answer = await self.notifications.get("/v1/notifications", headers=self.admin,
                                              params={"person": user_id})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


@asynccontextmanager
async def identity_and_notifications(
    pg_server: Any, database_url: str, kafka_bootstrap: str, sink: SmtpSink
) -> AsyncIterator[Stack]:
    async with serving_identity(database_url, kafka_bootstrap,
                                scheduler_interval=0.2) as (identity_url, identity_app):
        # Each service has a database of its own (both have tables named alike).
        notifications_db = await pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
        await create_topics(kafka_bootstrap, {"notifications.delivery": 3})
        settings = NotificationsSettings(
            database_url=notifications_db, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=f"{identity_url}/.well-known/jwks.json",
            identity_url=identity_url, identity_public_url=identity_url,
            service_client_id=MAILER_CLIENT[0], service_client_secret=MAILER_CLIENT[1],
            smtp_host="127.0.0.1", smtp_port=sink.port, delivery_poll_interval=0.1,
            # Keys are not cached here, so an expiry shows at once.
            personal_data_cache_seconds=0,
        )
        app = build_app(settings)
        async with LifespanManager(app, startup_timeout=TIMEOUT, shutdown_timeout=TIMEOUT), \
                httpx.AsyncClient(base_url=identity_url, timeout=30) as identity, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://notifications", timeout=30) as notifications:
            admin = await make_admin(identity_app, identity)
            await open_platform(identity, admin)
            yield Stack(identity_url, identity_app, identity, notifications, sink, admin)


async def mails_to(
    sink: SmtpSink, address: str, *, want: int = 1, containing: str = ""
) -> list[EmailMessage]:
    """The mails to ``address`` (whose text has ``containing``), waiting until ``want`` came."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = []
        for path in sorted(sink.messages()):
            message = email.message_from_bytes(
                await asyncio.to_thread(Path(path).read_bytes), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if str(message["To"]).lower() == address.lower() and containing in text_of(message):
                found.append(message)
        if len(found) >= want or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


def text_of(message: EmailMessage) -> str:
    text, html = (message.get_body(preferencelist=(kind,)) for kind in ("plain", "html"))
    assert text is not None and html is not None  # both parts, always
    return str(text.get_content())


async def test_the_confirmation_mail_comes_from_notifications_and_its_link_confirms(
    pg_server: Any, database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with identity_and_notifications(pg_server, database_url, kafka_bootstrap,
                                          smtp_sink) as stack:
        address = f"zoe-{uuid.uuid4().hex[:8]}@example.org"
        answer = await stack.identity.post("/v1/users", json={
            "email": address, "password": PASSWORD, "name": "Zoé", "locale": "fr"})
        assert answer.status_code == 201, answer.text
        user_id = answer.json()["user_id"]
        token = await mailed_token(stack.sink, address, "/confirm", within=TIMEOUT)
        [mail] = await mails_to(stack.sink, address, containing="/confirm?token=")
        before = await sign_in(stack.identity, address)
        confirmed = await stack.identity.post("/v1/users/confirm", json={"token": token})
        again = await stack.identity.post("/v1/users/confirm", json={"token": token})
        after = await sign_in(stack.identity, address)

        # The sealed token's key: the notifications client has it, any other client
        # gets exactly what an erased (or unknown) key answers.
        work = stack.identity_app.state.identity.accounts.work
        async with work.store.transaction() as tx:
            [registered] = [r for r in await tx.read_stream(user_id)
                            if r.envelope.type.endswith(".UserRegistered.v1")]
        key_id = subject_of(registered.envelope.data["confirmation_token"])
        for_mailer = await stack.key_answer(MAILER_CLIENT, key_id)
        for_audit = await stack.key_answer(SERVICE_CLIENT, key_id)
        for_nobody = await stack.key_answer(SERVICE_CLIENT, str(uuid.uuid4()))
        logged = {item["template"]: item for item in await stack.deliveries(user_id)}

        # When the token's time is up, its key is refused, then deleted by the scheduler.
        await work.store.pool.execute(
            "UPDATE delivery_keys SET expires_at = now() - interval '1 second' "
            "WHERE key_id = $1", uuid.UUID(key_id))
        expired = await stack.key_answer(MAILER_CLIENT, key_id)
        deadline = time.monotonic() + TIMEOUT
        while await work.store.pool.fetchval(
                "SELECT count(*) FROM delivery_keys WHERE key_id = $1", uuid.UUID(key_id)):
            assert time.monotonic() < deadline, "the scheduler kept an expired key"
            await asyncio.sleep(0.1)
        logged_after = {item["template"]: item for item in await stack.deliveries(user_id)}

    assert answer.json()["status"] == "pending_confirmation"
    assert mail["Subject"].startswith("Confirmez")  # the person's locale
    assert f"{stack.identity_url}/confirm?token={token}" in text_of(mail)
    assert before.status_code == 403 and before.json()["reason"] == "email_unconfirmed"
    assert confirmed.status_code == 200 and again.status_code == 400
    assert after.status_code == 201
    assert key_id != user_id
    assert for_mailer.status_code == 200
    assert for_audit.status_code == for_nobody.status_code == 404
    assert for_audit.json()["type"] == for_nobody.json()["type"]
    assert for_audit.json()["detail"] == for_nobody.json()["detail"]
    confirmation = logged["address_confirmation"]
    assert confirmation["status"] == "sent"
    assert confirmation["sealed_fields"] == {"token": "[sealed]", "name": "[sealed]"}
    assert expired.status_code == 404
    confirmation = logged_after["address_confirmation"]
    assert confirmation["sealed_fields"] == {"token": ERASED, "name": "[sealed]"}
    assert confirmation["recipient"].startswith("z***@")  # the person's own key still opens


async def test_a_reset_request_mails_a_token_that_sets_the_new_password(
    pg_server: Any, database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with identity_and_notifications(pg_server, database_url, kafka_bootstrap,
                                          smtp_sink) as stack:
        user_id, address = await register_active(stack.identity, stack.identity_app)
        nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
        unknown = await stack.identity.post("/v1/password-resets", json={"email": nobody})
        asked = await stack.identity.post("/v1/password-resets",
                                          json={"email": address.upper()})
        token = await mailed_token(stack.sink, address, "/reset", within=TIMEOUT)
        [mail] = await mails_to(stack.sink, address, containing="/reset?token=")
        reset = await stack.identity.post("/v1/password-resets/confirm", json={
            "token": token, "new_password": NEW_PASSWORD})
        old = await sign_in(stack.identity, address)
        new = await sign_in(stack.identity, address, NEW_PASSWORD)
        to_nobody = await mails_to(stack.sink, nobody, want=0)
        pending = await stack.identity_app.state.identity.accounts.work.store.pool.fetchval(
            "SELECT count(*) FROM password_reset_requests")
        logged = {item["template"]: item for item in await stack.deliveries(user_id)}

    assert unknown.status_code == asked.status_code == 202
    assert unknown.content == asked.content == b""
    assert f"{stack.identity_url}/reset?token={token}" in text_of(mail)
    assert reset.status_code == 204
    assert old.status_code == 401 and new.status_code == 201
    assert to_nobody == [] and pending == 0  # taken up, and nobody written to
    assert logged["password_reset"]["status"] == "sent"


async def test_the_farewell_reaches_the_old_address_after_the_data_is_erased(
    pg_server: Any, database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with identity_and_notifications(pg_server, database_url, kafka_bootstrap,
                                          smtp_sink) as stack:
        user_id, address = await register_active(stack.identity, stack.identity_app)
        deleted = await stack.identity.request(
            "DELETE", f"/v1/users/{user_id}", headers=stack.admin, json={"reason": "asked"})
        mails = await mails_to(stack.sink, address, containing="deleted")
        read = await stack.identity.get(f"/v1/users/{user_id}",
                                        headers={**stack.admin, "X-Purpose": "support"})
        notice_key = await stack.identity_app.state.identity.accounts.work.store.pool.fetchrow(
            "SELECT audience, purpose, expires_at - created_at AS lasts FROM delivery_keys "
            "WHERE user_id = $1", uuid.UUID(user_id))
        logged = {item["template"]: item for item in await stack.deliveries(user_id)}

    assert deleted.status_code == 200
    [farewell] = mails
    assert "deleted" in farewell["Subject"]
    assert "deleted" in text_of(farewell)
    assert (read.json()["email"], read.json()["name"]) == (ERASED, ERASED)
    assert (notice_key["audience"], notice_key["purpose"]) == ("notifications",
                                                               "deletion_notice")
    assert abs(notice_key["lasts"] - timedelta(days=7)) < timedelta(minutes=1)
    assert logged["account_deleted"]["status"] == "sent"
    # The notice's address opens with its own key; the person's other mails no longer do.
    assert logged["account_deleted"]["recipient"].startswith("a***@")
    assert logged["address_confirmation"]["recipient"] == ERASED
