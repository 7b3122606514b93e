"""The sender: due delivery rows -> rendered multipart e-mail -> SMTP -> NotificationSent/Failed.

Each pass, in this order:

1. a row whose lease ran out while ``sending`` (its sender died) is due again;
2. due rows are claimed with ``FOR UPDATE SKIP LOCKED`` (safe with several
   replicas), set to ``sending`` with the attempt counted and a lease, and
   that is COMMITTED before anything is sent;
3. each is rendered and handed to the server with its stable Message-ID;
4. the answer is recorded in one transaction with its event (through the
   outbox): sent; or scheduled again after an exponential backoff (4xx, no
   answer); or failed (5xx, attempts used up), which also dead-letters the
   causing event to ``notifications.dlq`` with the reason.

Exactly once, and the window that remains: a mail is sent at most once per
claim, and a claim is only repeated when its lease ran out without an
answer recorded. That happens only if the process dies (or the database is
unreachable for the whole lease) after the server accepted the message and
before step 4 committed — a window of one local database commit per mail.
The repeated mail then carries the same Message-ID, so receiving systems
that deduplicate by Message-ID drop it. Closing the window entirely would
need the SMTP server to take part in our transaction, which SMTP cannot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote
from uuid import UUID

import asyncpg
import structlog

from eventkit.dlq import dead_letter, dead_letter_topic
from eventkit.envelope import SYSTEM_ACTOR
from eventkit.kafka_client import MessageSink, ReceivedMessage
from eventkit.personal_data import KeyUnavailable, PersonalDataError
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventRegistry
from eventkit.store import Clock, NewEvent, utc_now
from schemas.notifications import NotificationFailed, NotificationSent
from services.notifications.domain import (
    TOKEN_LINK_PATHS,
    DeliveryStatus,
    Platform,
    TemplateName,
    decode_params,
    hash_recipient,
    retry_delay,
    within_window,
)
from services.notifications.mailer import Mailer, SendFailure
from services.notifications.personal_data import PersonalDataReader
from services.notifications.rendering import Renderer, as_email

log = structlog.get_logger(__name__)
GROUP = "notifications"

_RECOVER = """UPDATE deliveries SET status = 'scheduled', lease_until = NULL, updated_at = $1
              WHERE status = 'sending' AND lease_until < $1"""
_CLAIM = """UPDATE deliveries SET status = 'sending', attempts = attempts + 1,
                lease_until = $2, updated_at = $1
            WHERE notification_id IN (
                SELECT notification_id FROM deliveries
                WHERE status = 'scheduled' AND next_attempt_at <= $1
                ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING *"""


class DeliveryFailed(Exception):
    """What the DLQ entry of a causing event says (the SMTP answer, without addresses)."""


class Cancelled(Exception):
    """The mail must not go out any more; the reason lands in the delivery log."""


class Sender:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool[Any],
        store: PostgresEventStore,
        registry: EventRegistry,
        renderer: Renderer,
        mailer: Mailer,
        personal_data: PersonalDataReader,
        dead_letters: MessageSink,
        mail_from: str,
        contact_email: str,
        invitation_url_base: str,
        identity_public_url: str,
        recipient_hash_key: bytes,
        attempts: int = 5,
        base_delay: timedelta = timedelta(seconds=30),
        max_delay: timedelta = timedelta(hours=1),
        lease: timedelta = timedelta(minutes=2),
        batch: int = 50,
        clock: Clock = utc_now,
        on_recorded: Callable[[UUID, DeliveryStatus], Awaitable[None]] | None = None,
    ) -> None:
        self._pool, self._store, self._registry = pool, store, registry
        self._renderer, self._mailer, self._personal = renderer, mailer, personal_data
        self._dead_letters = dead_letters
        self._from, self._contact, self._url_base = mail_from, contact_email, invitation_url_base
        self._identity_url = identity_public_url.rstrip("/")
        self._hash_key = recipient_hash_key
        self._attempts, self._base, self._max = attempts, base_delay, max_delay
        self._lease, self._batch, self._clock = lease, batch, clock
        self._on_recorded = on_recorded
        self._sink_started = False

    async def run(self, stopping: asyncio.Event, *, interval: float = 1.0) -> None:
        """Deliver until ``stopping`` is set; a failing pass is logged and tried again."""
        while not stopping.is_set():
            handled = 0
            try:
                handled = await self.deliver_due()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("delivery pass failed; trying again", error=repr(error))
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=interval)

    async def deliver_due(self) -> int:
        """One pass: claim what is due, send it, record each answer. Returns the rows handled."""
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_RECOVER, now)
            claimed = await connection.fetch(_CLAIM, now, now + self._lease, self._batch)
        for row in sorted(claimed, key=lambda r: r["next_attempt_at"]):
            await self._deliver(row)
        await self.flush_dead_letters()
        return len(claimed)

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            message, address = await self._compose(row)
        except Cancelled as why:
            await self._finish(row, DeliveryStatus.CANCELLED, error=str(why))
            return
        except (KeyUnavailable, OSError) as error:
            await self._failed(row, SendFailure(None, f"personal data keys: {error}"), None)
            return
        recipient_hash = hash_recipient(address, key=self._hash_key)
        try:
            await self._mailer.send(message)
        except SendFailure as failure:
            await self._failed(row, failure, recipient_hash)
            return
        await self._finish(row, DeliveryStatus.SENT, recipient_hash=recipient_hash)

    async def _compose(self, row: asyncpg.Record) -> tuple[EmailMessage, str]:
        now = self._clock()
        if not within_window(now, None, row["not_after"]):
            raise Cancelled("too late: the mail's validity ended")
        async with self._pool.acquire() as connection:
            platform_row = await connection.fetchrow("SELECT * FROM platform_settings")
            if row["invitation_id"] is not None:
                invitation = await connection.fetchrow(
                    "SELECT status, valid_from, valid_until FROM invitations"
                    " WHERE invitation_id = $1", row["invitation_id"],
                )
                # Checked at the last moment: never outside the invitation's window.
                if invitation is None or invitation["status"] != "pending":
                    raise Cancelled("the invitation is no longer pending")
                if not within_window(now, invitation["valid_from"], invitation["valid_until"]):
                    raise Cancelled("outside the invitation's validity window")
        platform = Platform() if platform_row is None else Platform(
            name=platform_row["name"], time_zone=platform_row["time_zone"],
            default_locale=platform_row["default_locale"],
        )  # fmt: skip
        address = await self._reveal(row["recipient"], row["owner"])
        params = decode_params(row["params"])
        for name, sealed in json.loads(row["sealed"]).items():
            params[name] = await self._reveal(sealed, row["owner"])
        template = TemplateName(row["template"])
        if "code" in params and "link" not in params:
            params["link"] = f"{self._url_base}?code={quote(params['code'])}"
        if "token" in params:
            # An expired token's delivery key is gone, so such a mail was cancelled above.
            token = quote(params.pop("token"))
            params["link"] = f"{self._identity_url}{TOKEN_LINK_PATHS[template]}?token={token}"
        mail = self._renderer.render(template, locale=row["locale"], platform=platform,
                                     params=params, contact_email=self._contact)
        message = as_email(mail, template=template, sender=self._from, to=address,
                           message_id=row["message_id"], at=now)
        return message, address

    async def _reveal(self, sealed: str, owner: str) -> str:
        try:
            value = await self._personal.reveal(sealed, owner=owner)
        except PersonalDataError as error:
            raise Cancelled(f"personal data does not open: {error}") from error
        if value is None:
            raise Cancelled("personal data erased")
        return value

    async def _failed(
        self, row: asyncpg.Record, failure: SendFailure, recipient_hash: str | None
    ) -> None:
        if failure.temporary and row["attempts"] < self._attempts:
            delay = retry_delay(row["attempts"], base=self._base, cap=self._max)
            await self._finish(row, DeliveryStatus.SCHEDULED, error=str(failure),
                               retry_at=self._clock() + delay, recipient_hash=recipient_hash)
        else:
            if failure.temporary:
                failure = SendFailure(failure.code, f"gave up after {row['attempts']} attempts; "
                                      f"last: {failure.reason}")
            await self._finish(row, DeliveryStatus.FAILED, error=str(failure),
                               recipient_hash=recipient_hash)
        log.warning("mail not delivered", notification_id=str(row["notification_id"]),
                    attempt=row["attempts"], code=failure.code, reason=failure.reason)

    async def _finish(
        self,
        row: asyncpg.Record,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
        recipient_hash: str | None = None,
    ) -> None:
        now = self._clock()
        async with self._store.transaction() as tx:
            updated = await tx.connection.execute(
                """UPDATE deliveries SET status = $2, last_error = coalesce($3, last_error),
                       next_attempt_at = coalesce($4, next_attempt_at), lease_until = NULL,
                       recipient_hash = coalesce($5, recipient_hash), updated_at = $6,
                       sent_at = CASE WHEN $2 = 'sent' THEN $6 ELSE sent_at END,
                       dead_letter_due = ($2 = 'failed')
                   WHERE notification_id = $1 AND status = 'sending' AND attempts = $7""",
                row["notification_id"], str(status), error, retry_at, recipient_hash, now,
                row["attempts"],
            )
            if updated != "UPDATE 1":
                return  # the lease ran out and another pass took it over: its answer counts
            event = self._event(row, status, error, recipient_hash)
            if event is not None:
                await tx.append(str(row["notification_id"]), None, [event], actor_id=SYSTEM_ACTOR)
        if self._on_recorded is not None:
            await self._on_recorded(row["notification_id"], status)

    def _event(
        self, row: asyncpg.Record, status: DeliveryStatus, error: str | None,
        recipient_hash: str | None,
    ) -> NewEvent | None:
        common: dict[str, Any] = {
            "notification_id": row["notification_id"], "template": row["template"],
            "locale": row["locale"], "recipient_email": row["recipient"],
            "recipient_user_id": row["user_id"], "cause_event_id": row["cause_event_id"],
            "cause_type": row["cause_type"], "cause_subject": row["cause_subject"],
            "attempt": row["attempts"], "message_id": row["message_id"],
            "recipient_hash": recipient_hash,
        }  # fmt: skip
        if status is DeliveryStatus.SENT:
            event: NotificationSent | NotificationFailed = NotificationSent(**common)
        elif status in (DeliveryStatus.SCHEDULED, DeliveryStatus.FAILED):
            event = NotificationFailed(**common, error=error or "unknown",
                                       permanent=status is DeliveryStatus.FAILED)
        else:
            return None
        return NewEvent(type=type(event).event_type, topic=type(event).topic,
                        data_json=self._registry.encode(event))

    async def flush_dead_letters(self) -> int:
        """Write the causing events of failed mails to the DLQ; repeated until Kafka took them."""
        rows = await self._pool.fetch(
            "SELECT notification_id, cause_record, last_error, attempts FROM deliveries"
            " WHERE dead_letter_due ORDER BY updated_at LIMIT 100"
        )
        if rows and not self._sink_started:
            try:
                await self._dead_letters.start()
                await self._dead_letters.ensure_topic(dead_letter_topic(GROUP))
            except Exception as error:
                log.warning("DLQ not reachable; failed mails wait for it", error=repr(error))
                return 0
            self._sink_started = True
        for row in rows:
            record: Mapping[str, Any] = json.loads(row["cause_record"])
            original = ReceivedMessage(
                topic=record["topic"], partition=-1, offset=-1,
                key=base64.b64decode(record["key"]), value=base64.b64decode(record["value"]),
                headers=tuple((name, base64.b64decode(value)) for name, value in record["headers"]),
            )  # fmt: skip
            await self._dead_letters.send(dead_letter(
                original, group=GROUP, error=DeliveryFailed(row["last_error"]),
                attempts=row["attempts"], at=self._clock(),
            ))  # fmt: skip
            await self._pool.execute(
                "UPDATE deliveries SET dead_letter_due = false WHERE notification_id = $1",
                row["notification_id"],
            )
        return len(rows)

    async def close(self) -> None:
        await self._mailer.close()
        if self._sink_started:
            self._sink_started = False
            await self._dead_letters.stop()
