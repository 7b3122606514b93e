"""The notifications service end to end: Kafka events in, e-mail out through a real SMTP server.

Every test runs the whole service (consumer, sender, relay, HTTP) against the
session's PostgreSQL and Kafka, and an aiosmtpd server started here whose
handler decides how the "mail server" answers. Events carry their personal
fields encrypted exactly as identity and invitations write them
(``eventkit.personal_data``), opened with keys from an in-memory resolver; a
test erases a person by dropping their key.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiosmtpd.smtp import SMTP
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from eventkit.envelope import Envelope, encode_data
from eventkit.personal_data import KeyOwners, encrypt_event, encrypt_value, new_data_key
from eventkit.publisher import KafkaPublisher
from eventkit.registry import EventData
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from guestlist.stack.ports import free_port
from schemas.catalog import build_registry
from schemas.identity import PlatformSettingsChanged, UserRegistered, UserSuspended
from schemas.invitations import InvitationCreated
from schemas.roles import RoleAssignment
from services.notifications.bootstrap import build_app
from services.notifications.domain import TemplateName, notification_id
from services.notifications.settings import NotificationsSettings

pytestmark = pytest.mark.integration

TIMEOUT = 90.0
REGISTRY = build_registry()
Topics = Callable[..., Awaitable[str]]


class MemoryKeys:
    """Identity's (or invitations') key service, as a test plays it: erasure drops a key."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def key(self, subject: str) -> bytes:
        return self.keys.setdefault(subject, new_data_key())

    async def key_for(self, subject_id: str) -> bytes | None:
        return self.keys.get(subject_id)


@dataclass
class MailServer:
    """An aiosmtpd handler: answers DATA with ``replies`` in turn, then 250; keeps what it took."""

    replies: list[str] = field(default_factory=list)
    refuse_recipients: str | None = None
    received: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_recipients is not None:
            self.attempts += 1
            return self.refuse_recipients.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.replies:
            return self.replies.pop(0)
        message = email.message_from_bytes(envelope.original_content or b"",
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        return "250 Message accepted for delivery"


@asynccontextmanager
async def smtp_server(handler: MailServer) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    port = free_port()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="test-mx", enable_SMTPUTF8=True, loop=loop),
        host="127.0.0.1", port=port,
    )
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    token: str
    identity_keys: MemoryKeys
    invitation_keys: MemoryKeys
    topics: dict[str, str]
    bootstrap: str
    signing: SigningKey

    async def publish(self, *envelopes: Envelope) -> None:
        publisher = KafkaPublisher(self.bootstrap)
        await publisher.start()
        try:
            await publisher.publish([
                e.to_kafka(self.topics[REGISTRY.topic_of(e.type)]) for e in envelopes
            ])
        finally:
            await publisher.stop()

    async def pool_fetch(self, query: str, *args: Any) -> list[Any]:
        pool = self.app.state.runtime.database.pool
        return list(await pool.fetch(query, *args))


def envelope(event: EventData, subject: str, *, at: datetime | None = None,
             extra: dict[str, Any] | None = None) -> Envelope:
    data = json.loads(REGISTRY.encode(event)) | (extra or {})
    return Envelope(id=uuid.uuid4(), type=str(type(event).event_type), subject=subject,
                    time=at or datetime.now(UTC), actor_id="system", sequence=1,
                    data_json=encode_data(data))


def platform(name: str = "Riverside Commons", time_zone: str = "America/New_York",
             locale: str = "en") -> Envelope:
    platform_id = uuid.uuid4()
    return envelope(PlatformSettingsChanged(platform_id=platform_id, name=name,
                                            requires_invitation=True, time_zone=time_zone,
                                            default_locale=locale), str(platform_id))


def invitation(service: Service, *, address: str, locale: str = "es",
               valid_from: datetime | None = None, valid_until: datetime | None = None,
               code: str = "K7Q-PX2-LM9") -> tuple[Envelope, UUID]:
    invitation_id = uuid.uuid4()
    subject = str(invitation_id)
    key = service.invitation_keys.key(subject)
    event = InvitationCreated(
        invitation_id=invitation_id, invitee_email=address, inviter_id=uuid.uuid4(),
        roles=(RoleAssignment(role="community_member", scope="community",
                              community_id=uuid.uuid4()),),
        locale=locale, greeting="¡Nos encantaría contar contigo!",
        valid_from=valid_from or datetime.now(UTC) - timedelta(minutes=5),
        valid_until=valid_until or datetime(2031, 1, 15, 17, 0, tzinfo=UTC),
        code_hash="ab" * 32,
    )
    sealed = encrypt_event(event, subject_id=subject, key=key)
    return envelope(sealed, subject, extra={
        "invitation_code": encrypt_value(code, subject_id=subject, key=key),
    }), invitation_id


def registered(service: Service, *, address: str, name: str, locale: str = "fr"
               ) -> tuple[Envelope, UUID]:
    user_id = uuid.uuid4()
    key = service.identity_keys.key(str(user_id))
    event = UserRegistered(user_id=user_id, email=address, name=name, locale=locale)
    return envelope(encrypt_event(event, subject_id=str(user_id), key=key), str(user_id)), user_id


@asynccontextmanager
async def running_service(
    *, database_url: str, kafka_bootstrap: str, kafka_topics: Topics, smtp_port: int,
    **overrides: Any,
) -> AsyncIterator[Service]:
    topics = {name: await kafka_topics(name) for name in
              ("identity.user", "identity.platform", "invitations.invitation")}
    # The service writes to its real topic; the broker does not create topics on its own.
    await create_topics(kafka_bootstrap, {"notifications.delivery": 3})
    signing = SigningKey("test-key")
    identity_keys, invitation_keys = MemoryKeys(), MemoryKeys()
    async with serve_jwks(signing) as jwks:
        settings = NotificationsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, smtp_port=smtp_port, smtp_host="127.0.0.1",
            user_topic=topics["identity.user"], platform_topic=topics["identity.platform"],
            invitation_topic=topics["invitations.invitation"],
            message_id_domain="mail.riverside.example", contact_email="help@riverside.example",
            mail_from="Riverside Commons <no-reply@riverside.example>",
            retry_base_delay=timedelta(milliseconds=200), delivery_poll_interval=0.1,
            **overrides,
        )
        app = build_app(settings, personal_data=KeyOwners(
            {"identity": identity_keys, "invitations": invitation_keys}))
        async with LifespanManager(app, startup_timeout=TIMEOUT, shutdown_timeout=TIMEOUT):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
                token = signing.mint(permissions=["view_platform_logs", "manage_platform_users"])
                yield Service(app, client, token, identity_keys, invitation_keys, topics,
                              kafka_bootstrap, signing)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def delivery_events(bootstrap: str, cause: UUID, want: int) -> list[Envelope]:
    """NotificationSent/Failed caused by ``cause``, from the real topic (waits for ``want``)."""
    consumer = AIOKafkaConsumer("notifications.delivery", bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(found) < want:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        event = Envelope.from_kafka(m.key, m.value, m.headers)
                        if event.data.get("cause_event_id") == str(cause):
                            found.append(event)
    finally:
        await consumer.stop()
    return found


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


async def test_an_invitation_arrives_once_in_its_locale_with_times_in_the_platform_zone(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    mx = MailServer()
    async with smtp_server(mx) as port, running_service(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topics=kafka_topics,
        smtp_port=port,
    ) as service:
        created, invitation_id = invitation(service, address="ana@example.org")
        # The same event delivered twice (a relay retry) still makes one e-mail.
        await service.publish(platform(), created, created)

        async def arrived() -> bool:
            return len(mx.received) >= 1

        await eventually(arrived)
        [sent] = await delivery_events(kafka_bootstrap, created.id, want=1)
        await asyncio.sleep(1.0)  # time for a duplicate, if there were one, to arrive too

    assert len(mx.received) == 1
    [message] = mx.received
    expected_id = notification_id(created.id, TemplateName.INVITATION)
    assert message["Message-ID"] == f"<{expected_id}@mail.riverside.example>"
    assert message["To"] == "ana@example.org"
    assert message["From"] == "Riverside Commons <no-reply@riverside.example>"
    assert message["Subject"] == "Te invitamos a unirte a Riverside Commons"
    assert message["Content-Language"] == "es"
    assert message.get_content_type() == "multipart/alternative"
    text, html = text_and_html(message)
    for part in (text, html):
        assert "Te han invitado a unirte a Riverside Commons." in part
        assert "¡Nos encantaría contar contigo!" in part
        assert "Miembro de la comunidad (en una comunidad)" in part
        assert "K7Q-PX2-LM9" in part
        assert "http://127.0.0.1:8001/register?code=K7Q-PX2-LM9" in part
        # 17:00 UTC on 15 January is noon in New York (EST, UTC-5).
        assert "15 de enero de 2031, 12:00 (America/New_York)" in part
        assert "help@riverside.example" in part
    assert "<a href=" in html and "<a href=" not in text

    assert sent.type == "guestlist.notifications.NotificationSent.v1"
    data = sent.data
    assert data["template"] == "invitation" and data["locale"] == "es"
    assert data["message_id"] == f"<{expected_id}@mail.riverside.example>"
    assert data["cause_subject"] == str(invitation_id)
    assert len(data["recipient_hash"]) == 64
    assert "ana@example.org" not in sent.data_json  # the address travels encrypted


async def test_given_451_twice_then_one_mail_arrives_after_the_retries(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    mx = MailServer(replies=["451 4.3.0 Try again later", "451 4.3.0 Try again later"])
    async with smtp_server(mx) as port, running_service(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topics=kafka_topics,
        smtp_port=port,
    ) as service:
        joined, user_id = registered(service, address="luc@example.org", name="Luc")
        suspended = envelope(UserSuspended(user_id=user_id, reason="Spam in the forum",
                                           until=datetime(2031, 6, 1, 10, 0, tzinfo=UTC)),
                             str(user_id))
        await service.publish(platform(time_zone="Europe/Paris", locale="en"), joined, suspended)
        events = await delivery_events(kafka_bootstrap, suspended.id, want=3)
        [row] = await service.pool_fetch(
            "SELECT status, attempts FROM deliveries WHERE cause_event_id = $1", suspended.id)

    assert mx.attempts == 3
    assert len(mx.received) == 1
    [message] = mx.received
    assert message["Subject"] == "Votre compte Riverside Commons a été suspendu"
    text, _ = text_and_html(message)
    assert "Bonjour Luc," in text
    assert "Motif : Spam in the forum" in text
    assert "1 juin 2031, 12:00 (Europe/Paris)" in text  # 10:00 UTC is 12:00 in Paris in June
    assert [e.type.split(".")[2] for e in events] == [
        "NotificationFailed", "NotificationFailed", "NotificationSent"]
    assert [e.data["attempt"] for e in events] == [1, 2, 3]
    assert [e.data.get("permanent") for e in events] == [False, False, None]
    assert (row["status"], row["attempts"]) == ("sent", 3)


async def test_given_550_then_no_mail_a_notification_failed_and_the_event_in_the_dlq(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    mx = MailServer(refuse_recipients="550 5.1.1 <{address}>: no such mailbox")
    async with smtp_server(mx) as port, running_service(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topics=kafka_topics,
        smtp_port=port,
    ) as service:
        created, _ = invitation(service, address="nobody@example.org", locale="uk")
        await service.publish(platform(), created)
        [failed] = await delivery_events(kafka_bootstrap, created.id, want=1)
        dead = await _dead_letter(kafka_bootstrap, created.id)
        listed = (await service.client.get(
            "/v1/notifications", params={"status": "failed"},
            headers={"Authorization": f"Bearer {service.token}"})).json()

    assert mx.received == [] and mx.attempts == 1  # permanent: never tried again
    assert failed.type == "guestlist.notifications.NotificationFailed.v1"
    assert failed.data["permanent"] is True
    assert "550" in failed.data["error"]
    assert "nobody@example.org" not in failed.data_json
    headers = {name: value.decode() for name, value in dead}
    assert "550" in headers["dlq_error"] and "nobody@example.org" not in headers["dlq_error"]
    assert headers["dlq_group"] == "notifications"
    [item] = listed["items"]
    assert item["status"] == "failed" and item["recipient"] == "n***@example.org"


async def _dead_letter(bootstrap: str, cause: UUID) -> list[tuple[str, bytes]]:
    consumer = AIOKafkaConsumer("notifications.dlq", bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    async with asyncio.timeout(TIMEOUT):
        while True:  # the sender creates the topic with its first dead letter
            try:
                await consumer.start()
                break
            except Exception:
                await asyncio.sleep(0.5)
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                consumer.subscribe(["notifications.dlq"])
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        headers = list(m.headers)
                        if dict(headers).get("ce_id") == str(cause).encode():
                            return headers
    finally:
        await consumer.stop()


async def test_an_invitation_outside_its_window_is_never_sent(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    mx = MailServer()
    now = datetime.now(UTC)
    async with smtp_server(mx) as port, running_service(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topics=kafka_topics,
        smtp_port=port,
    ) as service:
        # Created on time but read after its window closed (a consumer far behind).
        late, _ = invitation(service, address="late@example.org",
                             valid_from=now - timedelta(days=2),
                             valid_until=now - timedelta(days=1))
        # Created ahead of its window: invitations sends InvitationSendDue when it opens.
        early, _ = invitation(service, address="early@example.org",
                              valid_from=now + timedelta(days=1),
                              valid_until=now + timedelta(days=9))
        control, _ = invitation(service, address="now@example.org")
        await service.publish(platform(), late, early, control)

        async def control_sent() -> bool:
            return len(mx.received) >= 1

        await eventually(control_sent)
        rows = await service.pool_fetch(
            "SELECT cause_event_id, status, last_error FROM deliveries")
        await asyncio.sleep(1.0)

    assert [m["To"] for m in mx.received] == ["now@example.org"]
    by_cause = {row["cause_event_id"]: row for row in rows}
    assert early.id not in by_cause
    assert by_cause[late.id]["status"] == "cancelled"
    assert "validity" in by_cause[late.id]["last_error"]
