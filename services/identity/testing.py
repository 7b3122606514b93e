"""For tests: identity as a real app on PostgreSQL and Kafka, its tokens, and what reached Kafka.

``running_identity`` serves the app in-process (ASGI); ``serving_identity``
puts it on a real HTTP port with uvicorn, for clients that must go over the
network (schemathesis, ``HttpKeyResolver``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from eventkit.envelope import Envelope
from eventkit.personal_data import decrypt_value, subject_of
from eventkit.testing.server import serving
from guestlist.stack.kafka import create_topics
from guestlist.stack.smtp_sink import SmtpSink
from services.identity.account_handlers import AccountHandlers
from services.identity.bootstrap import build_app
from services.identity.handlers import service_subject
from services.identity.settings import IdentitySettings

TOPICS = ("identity.user", "identity.platform", "identity.access", "invitations.invitation")
PASSWORD = "correct horse battery staple"  # noqa: S105 - test accounts only
SERVICE_CLIENT = ("audit", "audit-client-secret-0123")
# The audience of delivery keys: the one client that may open tokens in events.
MAILER_CLIENT = ("notifications", "notifications-client-secret-0123")
CLIENT_ADDRESS = "203.0.113.7"


def _settings(database_url: str, kafka_bootstrap: str, overrides: dict[str, Any]
              ) -> IdentitySettings:
    clients = ",".join("=".join(client) for client in (SERVICE_CLIENT, MAILER_CLIENT))
    values: dict[str, Any] = {"service_clients": clients, **overrides}
    return IdentitySettings(database_url=database_url, kafka_bootstrap=kafka_bootstrap, **values)


@asynccontextmanager
async def running_identity(
    database_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with its lifespan (consumers, relay, scheduler), and a client on it."""
    await create_topics(kafka_bootstrap, dict.fromkeys(TOPICS, 3))
    app = build_app(_settings(database_url, kafka_bootstrap, overrides))
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(CLIENT_ADDRESS, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://identity",
                                     timeout=30) as client:
            yield client, app


@asynccontextmanager
async def serving_identity(
    database_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[tuple[str, FastAPI]]:
    """The app in uvicorn on a free port of 127.0.0.1; yields its base URL."""
    await create_topics(kafka_bootstrap, dict.fromkeys(TOPICS, 3))
    app = build_app(_settings(database_url, kafka_bootstrap, overrides))
    async with serving(app) as base_url:
        yield base_url, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_admin(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    """A new platform manager, signed in; returns the Authorization header."""
    accounts: AccountHandlers = app.state.identity.accounts
    admin_email = f"admin-{uuid4().hex[:8]}@example.org"
    await accounts.create_admin(email=admin_email, password=PASSWORD, force=True)
    answer = await sign_in(client, admin_email)
    assert answer.status_code == 201, answer.text
    return bearer(answer.json()["access_token"])


async def open_platform(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Registration without an invitation, so tests can make people freely."""
    answer = await client.put("/v1/platform/settings", headers=admin, json={
        "name": "Open", "requires_invitation": False, "time_zone": "Europe/Berlin",
        "default_locale": "en", "dormant_after_days": 90,
    })
    assert answer.status_code == 200, answer.text


async def register_active(
    client: httpx.AsyncClient, app: FastAPI, name: str = "Ada Lovelace"
) -> tuple[str, str]:
    """A confirmed account (with the token its event carries); returns (user id, e-mail)."""
    address = f"ada-{uuid4().hex[:8]}@Example.org"
    answer = await client.post("/v1/users", json={
        "email": address, "password": PASSWORD, "name": name})
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "pending_confirmation"
    token = await event_token(app, answer.json()["user_id"], "confirmation_token")
    confirmed = await client.post("/v1/users/confirm", json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    return answer.json()["user_id"], address


async def signed_in(client: httpx.AsyncClient, address: str) -> dict[str, str]:
    answer = await sign_in(client, address)
    assert answer.status_code == 201, answer.text
    return bearer(answer.json()["access_token"])


async def event_token(
    app: FastAPI, user_id: str | UUID, field: str, *, skip: int = 0, within: float = 30
) -> str:
    """The (``skip``+1)-th ``field`` on the person's events, opened as the mailer would.

    The sealed token's delivery key is read as the notifications client reads
    it, so an expired key or one for another audience fails here too.
    """
    work = app.state.identity.accounts.work
    reader = service_subject(MAILER_CLIENT[0])
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with work.store.transaction() as tx:
            sealed = [
                value for recorded in await tx.read_stream(str(user_id))
                if isinstance(value := json.loads(recorded.envelope.data_json).get(field), str)
            ]
            if len(sealed) > skip:
                found = await work.data_keys.readable(
                    tx.connection, UUID(subject_of(sealed[skip])), reader=reader,
                    now=work.clock(),
                )
                assert found is not None, f"the delivery key of {field} is not readable"
                return decrypt_value(sealed[skip], key=found.key)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {field} on the events of {user_id}")


async def mailed_token(
    sink: SmtpSink, address: str, path: str, *, skip: int = 0, within: float = 60
) -> str:
    """The token of the ``path?token=`` link in the (``skip``+1)-th such mail to ``address``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = []
        for mail_path in sorted(sink.messages()):
            message = email.message_from_bytes(
                await asyncio.to_thread(Path(mail_path).read_bytes), policy=email.policy.default
            )
            if str(message["To"]).lower() != address.lower():
                continue
            assert isinstance(message, EmailMessage)
            text = message.get_body(preferencelist=("plain",))
            assert text is not None
            token = re.search(rf"{re.escape(path)}\?token=([\w-]+)", text.get_content())
            if token:
                found.append(token.group(1))
        if len(found) > skip:
            return found[skip]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail with a {path} link to {address}")


async def sign_in(client: httpx.AsyncClient, address: str, password: str = PASSWORD
                  ) -> httpx.Response:
    return await client.post("/v1/sessions", json={"email": address, "password": password})


@dataclass(frozen=True, slots=True)
class Published:
    """One record as it reached Kafka: its key and the CloudEvents envelope parsed from it."""

    key: str
    envelope: Envelope

    @property
    def name(self) -> str:
        return self.envelope.type.split(".")[2]

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.envelope.data_json)
        return parsed


async def events_on(
    kafka_bootstrap: str, topic: str, subject: str | UUID, want: set[str] | list[str],
    within: float = 60,
) -> list[Published]:
    """Records of ``subject`` on ``topic`` from the start, until every name in ``want`` came.

    Each record is parsed as a binary-mode CloudEvent (``Envelope.from_kafka``
    refuses a missing or wrong ``ce_*`` header or content type). ``want`` as a
    list counts repeats: ``["SessionsRevoked", "SessionsRevoked"]`` waits for two.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    found: list[Published] = []
    wanted = list(want)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    envelope = Envelope.from_kafka(record.key, record.value, record.headers)
                    if envelope.subject == str(subject):
                        found.append(Published((record.key or b"").decode(), envelope))
            names = [p.name for p in found]
            if all(names.count(name) >= wanted.count(name) for name in wanted):
                return found
    finally:
        await consumer.stop()
    raise AssertionError(f"only {[p.envelope.type for p in found]} on {topic}")


def only(published: list[Published], name: str) -> Published:
    """The one record named ``name``, checked for the CloudEvents attributes every event has."""
    matching = [p for p in published if p.name == name]
    assert len(matching) == 1, [p.envelope.type for p in published]
    record = matching[0]
    assert record.envelope.type == f"guestlist.identity.{name}.v1"
    assert record.envelope.source == "/guestlist/identity"
    assert record.key == record.envelope.subject
    return record
