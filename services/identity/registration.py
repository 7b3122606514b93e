"""Registration rules: who may create an account, and what it starts with.

Pure, like ``domain``. Identity knows invitations only from the invitations
service's events (a local copy, see ``consumers``); this module decides
whether a presented code opens the door and which roles come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from eventkit.registry import EventData
from schemas.identity import RoleGranted, UserEmailConfirmed, UserRegistered
from schemas.roles import RoleAssignment
from services.identity.account_status import DomainError

InvitationStatus = Literal["pending", "accepted", "revoked", "expired"]


class InvitationRefused(DomainError):
    """The code does not open registration; ``code`` says why (a problem type slug)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class KnownInvitation:
    """What identity learnt about an invitation from ``invitations.invitation``."""

    invitation_id: UUID
    status: InvitationStatus
    valid_from: datetime
    valid_until: datetime
    invitee_email_hash: str | None
    roles: tuple[RoleAssignment, ...] = ()


@dataclass(frozen=True, slots=True)
class Admission:
    """Registration may go ahead: through ``invitation`` (if any), confirmed or not."""

    invitation: KnownInvitation | None
    confirmed: bool
    roles: tuple[RoleAssignment, ...]


def admit(
    *,
    requires_invitation: bool,
    code_given: bool,
    invitation: KnownInvitation | None,
    email_hash: str,
    now: datetime,
) -> Admission:
    """Decide whether a registration may proceed.

    A code that is given is always checked, even on a public platform: a bad
    code is refused rather than silently ignored. A valid code for the same
    e-mail vouches for the address (active at once, with the invitation's
    roles); a valid code for another address opens the door only, and the
    account waits for e-mail confirmation without the invitation's roles.
    """
    if not code_given:
        if requires_invitation:
            raise InvitationRefused(
                "invitation-required", "this platform registers people by invitation only"
            )
        return Admission(invitation=None, confirmed=False, roles=())
    if invitation is None:
        raise InvitationRefused("invitation-unknown", "no invitation has this code")
    if invitation.status == "revoked":
        raise InvitationRefused("invitation-revoked", "this invitation was revoked")
    if invitation.status == "accepted":
        raise InvitationRefused("invitation-used", "this invitation was already used")
    if invitation.status == "expired" or now >= invitation.valid_until:
        raise InvitationRefused("invitation-expired", "this invitation has expired")
    if now < invitation.valid_from:
        raise InvitationRefused(
            "invitation-not-yet-valid",
            f"this invitation is valid from {invitation.valid_from.isoformat()}",
        )
    same_person = invitation.invitee_email_hash == email_hash
    return Admission(
        invitation=invitation,
        confirmed=same_person,
        roles=invitation.roles if same_person else (),
    )


def register(
    *,
    user_id: UUID,
    email: str,
    name: str | None,
    locale: str,
    via_invitation_id: UUID | None,
    invitation_roles: Sequence[RoleAssignment],
    default_role: RoleAssignment,
    confirmed: bool,
    confirmation_token: str | None = None,
) -> list[EventData]:
    """A new account: pending until confirmed, unless an invitation for this e-mail vouches.

    Everyone gets ``default_role``; an invitation's roles come on top, by the system.
    A pending account's event carries its confirmation token, already sealed
    under a delivery key, for the mail that asks to confirm.
    """
    events: list[EventData] = [
        UserRegistered(
            user_id=user_id, email=email, name=name, locale=locale,
            via_invitation_id=via_invitation_id,
            confirmation_token=None if confirmed else confirmation_token,
        )
    ]
    if confirmed:
        events.append(UserEmailConfirmed(user_id=user_id))
    seen: set[RoleAssignment] = set()
    for assignment in (default_role, *invitation_roles):
        if assignment in seen:
            continue
        seen.add(assignment)
        events.append(
            RoleGranted(
                user_id=user_id, role=assignment.role, scope=assignment.scope,
                community_id=assignment.community_id,
                via_invitation_id=via_invitation_id if assignment != default_role else None,
                privilege_escalation=assignment.scope == "platform",
            )
        )
    return events
