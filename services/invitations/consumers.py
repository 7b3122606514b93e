"""Reactions to other services' events, each applied exactly once by eventkit's inbox.

- ``identity.user`` ``UserRegistered`` with ``via_invitation_id`` -> ``InvitationAccepted``.
  The race: identity admits the registration on its own, possibly lagging, copy
  of ``invitations.invitation``. An invitation that by the registration's time
  was revoked, had expired, was not yet valid or was accepted by someone else is
  not turned into accepted: ``InvitationAcceptanceRefused`` (with the reason)
  is written instead, in the same transaction that marks the registration
  processed, so a redelivery writes it once. The account stays (identity
  decided on what it knew). See docs/DESIGN.md, "Invitations".
- ``identity.platform`` ``PlatformSettingsChanged`` -> the platform name the
  public lookup shows and the default locale of new invitations.
- ``identity.user`` ``UserDeleted`` -> the keys of that person's invitations are
  deleted: their e-mail, greeting and code become unreadable everywhere.
- ``notifications.delivery`` ``NotificationSent`` for an invitation e-mail ->
  ``last_sent_at`` and ``sent_count``.
"""

from __future__ import annotations

from uuid import UUID

import structlog

from eventkit.envelope import Envelope
from eventkit.registry import EventRegistry, UnknownEventType
from eventkit.store import Transaction
from schemas.identity import PlatformSettingsChanged, UserDeleted, UserRegistered
from schemas.invitations import InvitationAcceptanceRefused
from schemas.notifications import NotificationSent
from services.invitations.handlers import InvitationHandlers, InvitationNotFound, _connection
from services.invitations.platform import remember_platform

log = structlog.get_logger(__name__)

_OUR_TYPES = "guestlist.invitations."


class InvitationReactions:
    def __init__(self, handlers: InvitationHandlers, registry: EventRegistry) -> None:
        self._handlers = handlers
        self._registry = registry

    async def __call__(self, envelope: Envelope, tx: Transaction) -> None:
        try:
            event = self._registry.decode(envelope)
        except UnknownEventType:
            return  # a type newer than this reader knows: not ours to act on
        if isinstance(event, PlatformSettingsChanged):
            await remember_platform(_connection(tx), event, at=envelope.time)
        elif isinstance(event, UserRegistered) and event.via_invitation_id is not None:
            await self._accept(event.via_invitation_id, event.user_id, envelope, tx)
        elif isinstance(event, UserDeleted):
            await self._erase(event.user_id, tx)
        elif isinstance(event, NotificationSent) and event.cause_type.startswith(_OUR_TYPES):
            await self._sent(event, envelope, tx)

    async def _accept(
        self, invitation_id: UUID, user_id: UUID, envelope: Envelope, tx: Transaction
    ) -> None:
        try:
            decided = await self._handlers.register(
                tx, invitation_id, user_id=user_id, registered_at=envelope.time
            )
        except InvitationNotFound:
            # No stream to write a refusal to: identity only admits codes it read from us.
            log.warning("registration names an unknown invitation",
                        invitation_id=str(invitation_id))
            return
        if isinstance(decided, InvitationAcceptanceRefused):
            log.warning("registration did not accept the invitation",
                        invitation_id=str(invitation_id), user_id=str(user_id),
                        reason=decided.reason)

    async def _erase(self, user_id: UUID, tx: Transaction) -> None:
        conn = _connection(tx)
        email_hash = await conn.fetchval(
            "SELECT email_hash FROM invitations WHERE accepted_user_id = $1", user_id
        )
        if email_hash is not None:
            erased = await self._handlers.keys.destroy_for_email(conn, email_hash)
            log.info("invitation personal data erased", invitations=len(erased))

    async def _sent(self, event: NotificationSent, envelope: Envelope, tx: Transaction) -> None:
        try:
            invitation_id = UUID(event.cause_subject)
        except ValueError:
            return
        await _connection(tx).execute(
            "UPDATE invitations SET sent_count = sent_count + 1, "
            "last_sent_at = greatest(last_sent_at, $2) WHERE invitation_id = $1",
            invitation_id, envelope.time,
        )
