"""Reactions to other services' events, each applied exactly once by eventkit's inbox.

- ``identity.user`` ``UserRegistered`` with ``via_invitation_id`` -> ``InvitationAccepted``.
  An invitation revoked or expired before the registration was processed is not
  turned into accepted; the registration stands (identity decided on what it
  knew) and the refusal is logged. See docs/DESIGN.md, "Invitations".
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
from schemas.identity import UserDeleted, UserRegistered
from schemas.notifications import NotificationSent
from services.invitations.domain import InvitationRuleBroken
from services.invitations.handlers import InvitationHandlers, InvitationNotFound, _connection

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
        if isinstance(event, UserRegistered) and event.via_invitation_id is not None:
            await self._accept(event.via_invitation_id, event.user_id, envelope, tx)
        elif isinstance(event, UserDeleted):
            await self._erase(event.user_id, tx)
        elif isinstance(event, NotificationSent) and event.cause_type.startswith(_OUR_TYPES):
            await self._sent(event, envelope, tx)

    async def _accept(
        self, invitation_id: UUID, user_id: UUID, envelope: Envelope, tx: Transaction
    ) -> None:
        try:
            await self._handlers.accept(
                tx, invitation_id, user_id=user_id, registered_at=envelope.time
            )
        except InvitationNotFound:
            log.warning("registration names an unknown invitation",
                        invitation_id=str(invitation_id))
        except InvitationRuleBroken as refused:
            log.warning("registration did not accept the invitation",
                        invitation_id=str(invitation_id), user_id=str(user_id),
                        reason=str(refused))

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
