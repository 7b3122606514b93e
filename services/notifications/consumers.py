"""Reactions to identity's and invitations' events: keep the local copies, decide the mails.

One handler for the ``notifications`` consumer group. In the inbox's
transaction it updates what the service keeps of platform, people and
invitations, asks ``domain.MAILS`` what the event calls for, and writes one
delivery row per mail. Nothing is sent here: the sender picks the rows up
after this transaction committed, so a redelivered event (skipped by the
inbox) or a rolled-back one never causes a mail.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, cast
from uuid import UUID

import structlog

from eventkit.database import Connection
from eventkit.envelope import Envelope
from eventkit.inbox import PermanentError
from eventkit.postgres_store import PostgresTransaction
from eventkit.registry import EventData, EventRegistry, InvalidEventData, UnknownEventType
from eventkit.store import Clock, Transaction, utc_now
from schemas.identity import (
    PlatformSettingsChanged,
    UserEmailConfirmed,
    UserProfileUpdated,
    UserRegistered,
)
from schemas.invitations import (
    InvitationAccepted,
    InvitationCreated,
    InvitationExpired,
    InvitationRevoked,
)
from services.notifications.domain import (
    DeliveryStatus,
    InvitationFacts,
    Known,
    PersonFacts,
    PlannedMail,
    TemplateName,
    encode_params,
    mails_for,
    message_id,
    notification_id,
)

log = structlog.get_logger(__name__)

# Sealed values read from an event's data by name (see domain.Known).
_EXTRAS = ("invitation_code", "confirmation_token", "reset_token", "email")
_CLOSED = {InvitationAccepted: "accepted", InvitationExpired: "expired",
           InvitationRevoked: "revoked"}  # fmt: skip


def connection_of(tx: Transaction) -> Connection:
    """The service's own tables are written through the inbox's transaction."""
    if not isinstance(tx, PostgresTransaction):
        raise TypeError("the notifications consumer needs the PostgreSQL store")
    return tx.connection


def cause_record(envelope: Envelope, topic: str) -> dict[str, Any]:
    """The causing Kafka record, kept so a failed mail can be dead-lettered with it."""
    record = envelope.to_kafka(topic)
    return {
        "topic": record.topic,
        "key": base64.b64encode(record.key).decode(),
        "value": base64.b64encode(record.value).decode(),
        "headers": [[name, base64.b64encode(value).decode()] for name, value in record.headers],
    }


class MailDecisions:
    """The ``notifications`` group's handler."""

    def __init__(
        self, *, registry: EventRegistry, message_id_domain: str, clock: Clock = utc_now
    ) -> None:
        self._registry = registry
        self._message_id_domain = message_id_domain
        self._clock = clock

    async def __call__(self, envelope: Envelope, tx: Transaction) -> None:
        try:
            event = self._registry.decode(envelope)
        except UnknownEventType:
            return  # a type this version does not know causes no mail
        except InvalidEventData as error:
            raise PermanentError(str(error)) from error
        connection = connection_of(tx)
        await self._remember(connection, event, envelope)
        extras = {name: value for name in _EXTRAS
                  if isinstance(value := envelope.data.get(name), str)}  # fmt: skip
        known = Known(
            at=envelope.time,
            person=await _person(connection, getattr(event, "user_id", None)),
            invitation=await _invitation(connection, getattr(event, "invitation_id", None)),
            extras=extras,
        )
        for mail in mails_for(event, known):
            await self._schedule(connection, mail, envelope)

    async def _remember(self, connection: Connection, event: EventData, envelope: Envelope) -> None:
        if isinstance(event, PlatformSettingsChanged):
            await connection.execute(
                """INSERT INTO platform_settings (name, time_zone, default_locale, changed_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (singleton) DO UPDATE SET name = $1, time_zone = $2,
                       default_locale = $3, changed_at = $4
                   WHERE platform_settings.changed_at <= $4""",
                event.name, event.time_zone, event.default_locale, envelope.time,
            )
        elif isinstance(event, UserRegistered):
            await connection.execute(
                """INSERT INTO people (user_id, email, name, locale) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (user_id) DO NOTHING""",
                event.user_id, event.email, event.name, event.locale,
            )
        elif isinstance(event, UserProfileUpdated):
            await connection.execute(
                "UPDATE people SET name = $2, locale = $3 WHERE user_id = $1",
                event.user_id, event.name, event.locale,
            )
        elif isinstance(event, UserEmailConfirmed):
            await connection.execute("UPDATE people SET confirmed = true WHERE user_id = $1",
                                     event.user_id)
            await _cancel(connection, "the address was confirmed",
                          "user_id = $2 AND template = $3", event.user_id,
                          str(TemplateName.ADDRESS_CONFIRMATION))
        elif isinstance(event, InvitationCreated):
            await connection.execute(
                """INSERT INTO invitations (invitation_id, invitee_email, greeting, locale, roles,
                       valid_from, valid_until, status)
                   VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, 'pending')
                   ON CONFLICT (invitation_id) DO NOTHING""",
                event.invitation_id, event.invitee_email, event.greeting, event.locale,
                json.dumps([role.model_dump(mode="json") for role in event.roles]),
                event.valid_from, event.valid_until,
            )
        elif type(event) in _CLOSED:
            invitation_id = cast(UUID, getattr(event, "invitation_id"))  # noqa: B009
            status = _CLOSED[type(event)]
            await connection.execute(
                "UPDATE invitations SET status = $2 WHERE invitation_id = $1",
                invitation_id, status,
            )
            await _cancel(connection, f"the invitation was {status}", "invitation_id = $2",
                          invitation_id)

    async def _schedule(self, connection: Connection, mail: PlannedMail, cause: Envelope) -> None:
        template = TemplateName(mail.template)
        notification = notification_id(cause.id, template)
        now = self._clock()
        status = DeliveryStatus.CANCELLED if mail.cancelled_because else DeliveryStatus.SCHEDULED
        owner = "invitations" if mail.invitation_id is not None else "identity"
        start = max(now, mail.not_before) if mail.not_before else now
        await connection.execute(
            """INSERT INTO deliveries (notification_id, message_id, template, locale, owner,
                   recipient, user_id, invitation_id, params, sealed, cause_event_id, cause_type,
                   cause_subject, cause_record, status, next_attempt_at, not_after, last_error,
                   created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, $12, $13,
                       $14::jsonb, $15, $16, $17, $18, $19, $19)
               ON CONFLICT DO NOTHING""",
            notification, message_id(notification, domain=self._message_id_domain),
            str(template), mail.locale, owner, mail.recipient, mail.user_id, mail.invitation_id,
            encode_params(dict(mail.params)), encode_params(dict(mail.sealed)), cause.id,
            cause.type, cause.subject,
            encode_params(cause_record(cause, self._registry.topic_of(cause.type))),
            str(status), start, mail.not_after, mail.cancelled_because, now,
        )
        log.info("mail scheduled", notification_id=str(notification), template=str(template),
                 cause_event_id=str(cause.id), status=str(status))


async def _cancel(connection: Connection, reason: str, where: str, *args: Any) -> None:
    await connection.execute(
        f"""UPDATE deliveries SET status = 'cancelled', last_error = $1, updated_at = now()
            WHERE status = 'scheduled' AND {where}""",
        reason, *args,
    )


async def _person(connection: Connection, user_id: object) -> PersonFacts | None:
    if not isinstance(user_id, UUID):
        return None
    row = await connection.fetchrow("SELECT * FROM people WHERE user_id = $1", user_id)
    if row is None:
        return None
    return PersonFacts(user_id=row["user_id"], email=row["email"], locale=row["locale"],
                       name=row["name"])


async def _invitation(connection: Connection, invitation_id: object) -> InvitationFacts | None:
    if not isinstance(invitation_id, UUID):
        return None
    row = await connection.fetchrow(
        "SELECT * FROM invitations WHERE invitation_id = $1", invitation_id
    )
    if row is None:
        return None
    roles: list[Mapping[str, Any]] = json.loads(row["roles"])
    return InvitationFacts(
        invitation_id=row["invitation_id"], invitee_email=row["invitee_email"],
        locale=row["locale"], roles=tuple(roles), valid_from=row["valid_from"],
        valid_until=row["valid_until"], status=row["status"], greeting=row["greeting"],
    )
