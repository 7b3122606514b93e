"""Command handlers: load the invitation, let the domain decide, append, keep the lookup row.

Every handler runs inside a transaction its caller opened (the HTTP route,
with its Idempotency-Key; the bulk worker; a consumer), so the events, the
outbox rows, the ``invitations`` row and the idempotent answer commit together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID, uuid4

import asyncpg

from eventkit.personal_data import decrypt_value, encrypt_event, is_encrypted
from eventkit.position import position_of
from eventkit.registry import EventData, EventRegistry
from eventkit.store import Clock, NewEvent, RecordedEvent, Transaction
from schemas.invitations import InvitationAccepted, InvitationCreated
from schemas.permissions import ROLE_PERMISSIONS
from schemas.roles import DEFAULT_COMMUNITY_ROLE, RoleAssignment
from services.invitations.commands import CreateInvitation
from services.invitations.domain import (
    DuplicatePendingInvitation,
    Invitation,
    InvitationRuleBroken,
    ResendPolicy,
    ValidityPolicy,
    create_invitation,
)
from services.invitations.platform import Platform, current_platform
from services.invitations.secrets import InvitationKeys, ServiceSecrets, new_code
from services.invitations.settings import InvitationsSettings


class InvitationNotFound(Exception):
    """No invitation has this id."""


class PersonalDataErased(Exception):
    """The invitation's key was erased: its e-mail, greeting and code are gone."""


@dataclass(frozen=True, slots=True)
class Policies:
    validity: ValidityPolicy
    resend: ResendPolicy
    reminder_before_expiry: timedelta

    @classmethod
    def from_settings(cls, settings: InvitationsSettings) -> Policies:
        return cls(
            validity=ValidityPolicy(
                default_length=settings.invitation_validity,
                max_length=settings.invitation_max_validity,
            ),
            resend=ResendPolicy(
                per_invitation_interval=settings.resend_interval,
                per_inviter_limit=settings.inviter_send_limit,
                per_inviter_window=settings.inviter_send_window,
            ),
            reminder_before_expiry=settings.reminder_before_expiry,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the stream's new version and the token of its last event."""

    invitation_id: UUID
    version: int
    position: str


@dataclass(frozen=True, slots=True)
class Created(Outcome):
    code: str
    url: str
    event: InvitationCreated


@dataclass(frozen=True, slots=True)
class Loaded:
    invitation: Invitation
    created: InvitationCreated
    # The token of the stream's last event: what a read of this history has seen.
    position: str


class InvitationHandlers:
    def __init__(
        self,
        *,
        registry: EventRegistry,
        secrets: ServiceSecrets,
        settings: InvitationsSettings,
        clock: Clock,
    ) -> None:
        self.registry = registry
        self.secrets = secrets
        self.keys = InvitationKeys(secrets.key_wrapping)
        self.policies = Policies.from_settings(settings)
        self.clock = clock
        self._url_base = settings.invitation_url_base
        self._default_community = settings.default_community_id
        self.platform_fallback = Platform(name=settings.platform_name,
                                          default_locale=settings.platform_default_locale)

    # --- reading one invitation's history ---------------------------------------------------

    async def load(self, tx: Transaction, invitation_id: UUID) -> Loaded:
        recorded = await tx.read_stream(str(invitation_id))
        if not recorded:
            raise InvitationNotFound(str(invitation_id))
        history = [(self.registry.decode(r.envelope), r.envelope.time) for r in recorded]
        created = history[0][0]
        if not isinstance(created, InvitationCreated):
            raise InvitationNotFound(str(invitation_id))
        return Loaded(Invitation.replay(history), created, position_of(recorded[-1]))

    async def open_field(
        self, tx: Transaction, invitation_id: UUID, value: str | None
    ) -> str | None:
        """A personal field of the invitation in clear; PersonalDataErased without its key."""
        if value is None or not is_encrypted(value):
            return value
        key = await self.keys.get(_connection(tx), invitation_id)
        if key is None:
            raise PersonalDataErased(str(invitation_id))
        return decrypt_value(value, key=key)

    def url_for(self, code: str) -> str:
        return f"{self._url_base}?{urlencode({'code': code})}"

    # --- commands ---------------------------------------------------------------------------

    async def create(
        self,
        tx: Transaction,
        command: CreateInvitation,
        *,
        inviter_id: UUID,
        permissions: frozenset[str],
        batch_id: UUID | None = None,
    ) -> Created:
        conn = _connection(tx)
        now = self.clock()
        invitation_id = uuid4()
        email_hash = self.secrets.email_hash(command.invitee_email)
        existing = await conn.fetchval(
            "SELECT invitation_id FROM invitations WHERE email_hash = $1 AND status = 'pending'",
            email_hash,
        )
        code = new_code()
        locale = command.locale or (
            await current_platform(conn, fallback=self.platform_fallback)
        ).default_locale
        event = create_invitation(
            invitation_id=invitation_id,
            invitee_email=command.invitee_email,
            inviter_id=inviter_id,
            inviter_permissions=permissions,
            roles=self._roles(command),
            locale=locale,
            greeting=command.greeting,
            valid_from=command.valid_from,
            valid_until=command.valid_until,
            now=now,
            existing_pending=existing,
            code_hash=self.secrets.code_hash(code),
            validity=self.policies.validity,
            role_permissions=ROLE_PERMISSIONS,
            batch_id=batch_id,
        )
        try:
            # A savepoint: losing the race for the address must not abort the caller's work.
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO invitations (invitation_id, email_hash, code_hash, status, "
                    "inviter_id, roles, locale, valid_from, valid_until, created_at, batch_id, "
                    "window_opened, version) "
                    "VALUES ($1, $2, $3, 'pending', $4, $5::jsonb, $6, $7, $8, $9, $10, $11, 1)",
                    invitation_id, email_hash, event.code_hash, inviter_id,
                    json.dumps([role.model_dump(mode="json") for role in event.roles]),
                    event.locale, event.valid_from, event.valid_until, now, batch_id,
                    event.valid_from <= now,
                )
        except asyncpg.UniqueViolationError:
            other = await conn.fetchval(
                "SELECT invitation_id FROM invitations WHERE email_hash = $1 "
                "AND status = 'pending'",
                email_hash,
            )
            raise DuplicatePendingInvitation(other or invitation_id) from None
        key = await self.keys.create(conn, invitation_id)
        sealed = encrypt_event(
            event.model_copy(update={"invitation_code": code}),
            subject_id=str(invitation_id), key=key,
        )
        recorded = await self._append(tx, invitation_id, 0, [sealed], actor=inviter_id)
        return Created(
            invitation_id=invitation_id, version=recorded[-1].version,
            position=position_of(recorded[-1]), code=code, url=self.url_for(code), event=event,
        )

    def _roles(self, command: CreateInvitation) -> list[tuple[str, RoleAssignment]]:
        roles: list[tuple[str, RoleAssignment]] = []
        if command.platform_role is not None:
            roles.append(
                ("platform_role", RoleAssignment(role=command.platform_role, scope="platform"))
            )
        community = command.community_id or self._default_community
        # Everyone gets the default role in the default community: no grant to check or carry.
        implicit = (
            command.community_role == DEFAULT_COMMUNITY_ROLE
            and community == self._default_community
        )
        if not implicit:
            roles.append((
                "community_role",
                RoleAssignment(
                    role=command.community_role, scope="community", community_id=community
                ),
            ))
        return roles

    async def resend(self, tx: Transaction, invitation_id: UUID, *, by: UUID) -> Outcome:
        conn = _connection(tx)
        now = self.clock()
        window = self.policies.resend.per_inviter_window
        # One resend per inviter at a time, so two parallel requests cannot both be the 10th.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('invitations.resend:' || $1::text))", str(by)
        )
        loaded = await self.load(tx, invitation_id)
        await conn.execute(
            "DELETE FROM invitation_sends WHERE inviter_id = $1 AND sent_at <= $2",
            by, now - window,
        )
        sends = [
            row["sent_at"]
            for row in await conn.fetch(
                "SELECT sent_at FROM invitation_sends WHERE inviter_id = $1", by
            )
        ]
        event = loaded.invitation.resend(
            by=by, now=now, inviter_sends=sends, policy=self.policies.resend
        )
        event = event.model_copy(update={"invitation_code": loaded.created.invitation_code})
        recorded = await self._append(
            tx, invitation_id, loaded.invitation.version, [event], actor=by
        )
        await conn.execute(
            "INSERT INTO invitation_sends (inviter_id, sent_at, invitation_id) VALUES ($1, $2, $3)",
            by, now, invitation_id,
        )
        await self._touch(tx, invitation_id, recorded)
        return _outcome(invitation_id, recorded)

    async def revoke(
        self, tx: Transaction, invitation_id: UUID, *, by: UUID, reason: str | None
    ) -> Outcome:
        loaded = await self.load(tx, invitation_id)
        event = loaded.invitation.revoke(by=by, reason=reason)
        recorded = await self._append(
            tx, invitation_id, loaded.invitation.version, [event], actor=by
        )
        await self._touch(tx, invitation_id, recorded, status="revoked")
        return _outcome(invitation_id, recorded)

    async def view_url(
        self, tx: Transaction, invitation_id: UUID, *, by: UUID, endpoint: str
    ) -> tuple[Outcome, str]:
        """The code and URL again; the read is an event on the invitation's history."""
        loaded = await self.load(tx, invitation_id)
        code = await self.open_field(tx, invitation_id, loaded.created.invitation_code)
        if code is None:
            raise PersonalDataErased(str(invitation_id))
        event = loaded.invitation.view_url(by=by, endpoint=endpoint)
        recorded = await self._append(tx, invitation_id, None, [event], actor=by)
        await self._touch(tx, invitation_id, recorded)
        return _outcome(invitation_id, recorded), code

    async def register(
        self, tx: Transaction, invitation_id: UUID, *, user_id: UUID, registered_at: datetime
    ) -> EventData | None:
        """A registration naming the invitation: InvitationAccepted, or InvitationAcceptanceRefused
        when it was no longer acceptable, or nothing when it is already this person's.

        Runs in the consumer's transaction, which also records the registration
        as processed: a redelivered registration writes neither event again.
        """
        loaded = await self.load(tx, invitation_id)
        event = loaded.invitation.register(user_id=user_id, registered_at=registered_at)
        if event is None:
            return None
        recorded = await self._append(
            tx, invitation_id, loaded.invitation.version, [event], actor="system"
        )
        if isinstance(event, InvitationAccepted):
            await _connection(tx).execute(
                "UPDATE invitations SET accepted_at = $2, accepted_user_id = $3 "
                "WHERE invitation_id = $1",
                invitation_id, registered_at, user_id,
            )
            await self._touch(tx, invitation_id, recorded, status="accepted")
        else:
            await self._touch(tx, invitation_id, recorded)
        return event

    # --- time -------------------------------------------------------------------------------

    async def expire(self, tx: Transaction, invitation_id: UUID, *, now: datetime) -> bool:
        loaded = await self.load(tx, invitation_id)
        event = loaded.invitation.expire(now=now)
        if event is None:
            return False
        recorded = await self._append(
            tx, invitation_id, loaded.invitation.version, [event], actor="system"
        )
        await self._touch(tx, invitation_id, recorded, status="expired")
        return True

    async def open_window(self, tx: Transaction, invitation_id: UUID, *, now: datetime) -> bool:
        loaded = await self.load(tx, invitation_id)
        event = loaded.invitation.open_window(now=now)
        if event is None:
            return False
        event = event.model_copy(update={"invitation_code": loaded.created.invitation_code})
        recorded = await self._append(
            tx, invitation_id, loaded.invitation.version, [event], actor="system"
        )
        await _connection(tx).execute(
            "UPDATE invitations SET window_opened = true WHERE invitation_id = $1", invitation_id
        )
        await self._touch(tx, invitation_id, recorded)
        return True

    async def remind(self, tx: Transaction, invitation_id: UUID, *, now: datetime) -> bool:
        loaded = await self.load(tx, invitation_id)
        event = loaded.invitation.remind(
            now=now, before_expiry=self.policies.reminder_before_expiry
        )
        if event is None:
            return False
        event = event.model_copy(update={"invitation_code": loaded.created.invitation_code})
        recorded = await self._append(
            tx, invitation_id, loaded.invitation.version, [event], actor="system"
        )
        await _connection(tx).execute(
            "UPDATE invitations SET reminded_at = $2 WHERE invitation_id = $1", invitation_id, now
        )
        await self._touch(tx, invitation_id, recorded)
        return True

    # --- plumbing ---------------------------------------------------------------------------

    async def _append(
        self,
        tx: Transaction,
        invitation_id: UUID,
        expected_version: int | None,
        events: Sequence[EventData],
        *,
        actor: UUID | str,
    ) -> list[RecordedEvent]:
        new = [
            NewEvent(type=e.event_type, topic=e.topic, data_json=self.registry.encode(e))
            for e in events
        ]
        return await tx.append(str(invitation_id), expected_version, new, actor_id=str(actor))

    async def _touch(
        self,
        tx: Transaction,
        invitation_id: UUID,
        recorded: Sequence[RecordedEvent],
        *,
        status: str | None = None,
    ) -> None:
        await _connection(tx).execute(
            "UPDATE invitations SET version = $2, status = coalesce($3, status), "
            "closed_at = CASE WHEN $3::text IS NULL THEN closed_at ELSE $4 END "
            "WHERE invitation_id = $1",
            invitation_id, recorded[-1].version, status, self.clock(),
        )


def _outcome(invitation_id: UUID, recorded: Sequence[RecordedEvent]) -> Outcome:
    return Outcome(
        invitation_id=invitation_id, version=recorded[-1].version,
        position=position_of(recorded[-1]),
    )


def _connection(tx: Transaction) -> Any:
    """The transaction's own connection, for the service's tables (PostgreSQL store only)."""
    connection = getattr(tx, "connection", None)
    if connection is None:
        raise RuntimeError("the invitations service needs the PostgreSQL store")
    return connection


__all__ = [
    "Created",
    "InvitationHandlers",
    "InvitationNotFound",
    "InvitationRuleBroken",
    "Outcome",
    "PersonalDataErased",
]
