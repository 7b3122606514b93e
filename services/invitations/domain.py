"""The invitation aggregate and its rules; pure, no I/O.

An invitation is rebuilt from its events (:meth:`Invitation.replay`), and each
decision returns the event it leads to or raises a :class:`InvitationRuleBroken`
that names what was wrong. Time is always passed in, so every rule can be
tested without waiting.

Statuses: ``pending`` until it is accepted, revoked or expires; the other three
are final. A pending invitation whose ``valid_from`` lies ahead is not sent and
cannot be accepted until then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from eventkit.registry import EventData
from schemas.invitations import (
    InvitationAcceptanceRefused,
    InvitationAccepted,
    InvitationCreated,
    InvitationExpired,
    InvitationReminderDue,
    InvitationResent,
    InvitationRevoked,
    InvitationSendDue,
    InvitationUrlViewed,
)
from schemas.roles import Role, RoleAssignment


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    EXPIRED = "expired"
    REVOKED = "revoked"


class InvitationRuleBroken(Exception):
    """A command the rules refuse; ``field`` names the input at fault, if one is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidValidity(InvitationRuleBroken):
    """The validity window is empty, inverted, too long or in the past."""


class RoleNotGrantable(InvitationRuleBroken):
    """The inviter asked for a role they could not grant themselves."""

    def __init__(self, role: Role, *, field: str) -> None:
        super().__init__(
            f"you cannot assign {role}: it carries permissions you do not hold", field=field
        )
        self.role = role


class DuplicatePendingInvitation(InvitationRuleBroken):
    """The e-mail address already has a pending invitation."""

    def __init__(self, existing_id: UUID) -> None:
        super().__init__(
            f"invitation {existing_id} is already pending for this e-mail address",
            field="invitee_email",
        )
        self.existing_id = existing_id


class NotPending(InvitationRuleBroken):
    """Only a pending invitation can be resent, revoked, reminded or accepted."""

    def __init__(self, status: InvitationStatus, action: str) -> None:
        super().__init__(f"the invitation is {status}; only a pending one can be {action}")
        self.status = status


class NotYetValid(InvitationRuleBroken):
    """The validity window has not opened yet."""


class ResendThrottled(InvitationRuleBroken):
    """Sent too recently (per invitation) or too often (per inviter)."""

    def __init__(self, message: str, *, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, math.ceil(retry_after.total_seconds()))


@dataclass(frozen=True, slots=True)
class ValidityPolicy:
    default_length: timedelta = timedelta(days=30)
    max_length: timedelta = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class ResendPolicy:
    per_invitation_interval: timedelta = timedelta(minutes=15)
    per_inviter_limit: int = 10
    per_inviter_window: timedelta = timedelta(minutes=15)


def validity_window(
    *,
    now: datetime,
    valid_from: datetime | None,
    valid_until: datetime | None,
    policy: ValidityPolicy,
) -> tuple[datetime, datetime]:
    """The window an invitation gets: from now (or ``valid_from``) for the default length.

    It must be positive, at most ``policy.max_length`` long, and must not end
    in the past (an invitation that can never be used is a mistake).
    """
    start = valid_from if valid_from is not None else now
    end = valid_until if valid_until is not None else start + policy.default_length
    if end <= start:
        raise InvalidValidity("valid_until must be after valid_from", field="valid_until")
    if end - start > policy.max_length:
        raise InvalidValidity(
            f"the validity window may be at most {policy.max_length.days} days long",
            field="valid_until",
        )
    if end <= now:
        raise InvalidValidity("valid_until is in the past", field="valid_until")
    return start, end


RolePermissions = Mapping[Role, frozenset[str]]


def check_roles_grantable(
    roles: Sequence[tuple[str, RoleAssignment]],
    *,
    inviter_permissions: frozenset[str],
    role_permissions: RolePermissions,
) -> None:
    """An inviter may assign a role only if they hold every permission it carries.

    ``roles`` pairs each assignment with the request field it came from, so the
    refusal names that field.
    """
    for field, assignment in roles:
        carried = role_permissions.get(assignment.role)
        if carried is None or not carried <= inviter_permissions:
            raise RoleNotGrantable(assignment.role, field=field)


def check_no_pending(existing_id: UUID | None) -> None:
    """One pending invitation per e-mail address."""
    if existing_id is not None:
        raise DuplicatePendingInvitation(existing_id)


def resend_wait(
    *,
    now: datetime,
    last_sent_at: datetime | None,
    inviter_sends: Sequence[datetime],
    policy: ResendPolicy,
) -> None:
    """Raise :class:`ResendThrottled` with how long to wait, or return when a send may go.

    ``last_sent_at`` is when this invitation's e-mail last went out (created or
    resent); ``inviter_sends`` are the inviter's resends in the recent past.
    """
    if last_sent_at is not None:
        next_allowed = last_sent_at + policy.per_invitation_interval
        if now < next_allowed:
            raise ResendThrottled(
                "this invitation was sent less than "
                f"{_minutes(policy.per_invitation_interval)} minutes ago",
                retry_after=next_allowed - now,
            )
    window_start = now - policy.per_inviter_window
    recent = sorted(sent for sent in inviter_sends if sent > window_start)
    if len(recent) >= policy.per_inviter_limit:
        # Free again once the oldest send that keeps the count at the limit leaves the window.
        frees_at = recent[len(recent) - policy.per_inviter_limit] + policy.per_inviter_window
        raise ResendThrottled(
            f"you sent {policy.per_inviter_limit} invitations in the last "
            f"{_minutes(policy.per_inviter_window)} minutes",
            retry_after=frees_at - now,
        )


def _minutes(period: timedelta) -> int:
    return int(period.total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class Invitation:
    """What the rules need to know about one invitation, folded from its events."""

    invitation_id: UUID
    status: InvitationStatus
    inviter_id: UUID
    valid_from: datetime
    valid_until: datetime
    version: int
    # The first e-mail went out: at creation when the window was open, else when it opened.
    window_opened: bool
    last_sent_at: datetime | None
    reminders: int
    accepted_user_id: UUID | None = None

    @classmethod
    def replay(cls, events: Iterable[tuple[EventData, datetime]]) -> Invitation:
        """Fold ``(event, recorded_at)`` pairs, oldest first, into the current state."""
        state: Invitation | None = None
        for event, at in events:
            state = _apply(state, event, at)
        if state is None:
            raise ValueError("an invitation starts with InvitationCreated")
        return state

    def _require_pending(self, action: str) -> None:
        if self.status is not InvitationStatus.PENDING:
            raise NotPending(self.status, action)

    def resend(
        self,
        *,
        by: UUID,
        now: datetime,
        inviter_sends: Sequence[datetime],
        policy: ResendPolicy,
    ) -> InvitationResent:
        self._require_pending("resent")
        if now < self.valid_from:
            raise NotYetValid(
                "the invitation's window has not opened; its e-mail goes out when it does"
            )
        resend_wait(
            now=now, last_sent_at=self.last_sent_at, inviter_sends=inviter_sends, policy=policy
        )
        return InvitationResent(invitation_id=self.invitation_id, resent_by=by)

    def revoke(self, *, by: UUID, reason: str | None) -> InvitationRevoked:
        self._require_pending("revoked")
        return InvitationRevoked(invitation_id=self.invitation_id, revoked_by=by, reason=reason)

    def accept(self, *, user_id: UUID, registered_at: datetime) -> InvitationAccepted:
        """Accepted if pending and ``registered_at`` falls inside the validity window.

        An invitation past ``valid_until`` that the scheduler has not expired yet
        is refused all the same: the window decides, not the scheduler's pace.
        """
        self._require_pending("accepted")
        if registered_at < self.valid_from:
            raise NotYetValid("the invitation cannot be accepted before valid_from")
        if registered_at >= self.valid_until:
            raise NotPending(InvitationStatus.EXPIRED, "accepted")
        return InvitationAccepted(
            invitation_id=self.invitation_id, user_id=user_id, accepted_at=registered_at
        )

    def register(
        self, *, user_id: UUID, registered_at: datetime
    ) -> InvitationAccepted | InvitationAcceptanceRefused | None:
        """What a registration naming this invitation leads to: accepted, refused, or nothing.

        Identity admits registrations on its own copy of this history, which can
        lag: a registration may arrive for an invitation already revoked, expired,
        not yet open or accepted by someone else. That is refused with the
        reason, so audit and security monitoring see it; the account stays. The
        same person's registration again (the invitation is already theirs) is
        nothing new and leads to nothing.
        """
        if self.status is InvitationStatus.ACCEPTED and self.accepted_user_id == user_id:
            return None
        try:
            return self.accept(user_id=user_id, registered_at=registered_at)
        except InvitationRuleBroken:
            pass
        reason = _REFUSALS.get(self.status) or (
            "not_yet_valid" if registered_at < self.valid_from else "expired"
        )
        return InvitationAcceptanceRefused(
            invitation_id=self.invitation_id, user_id=user_id, reason=reason,
            registered_at=registered_at,
        )

    def expire(self, *, now: datetime) -> InvitationExpired | None:
        if self.status is not InvitationStatus.PENDING or now < self.valid_until:
            return None
        return InvitationExpired(invitation_id=self.invitation_id, valid_until=self.valid_until)

    def open_window(self, *, now: datetime) -> InvitationSendDue | None:
        """The e-mail of an invitation created ahead of its window goes out when it opens."""
        if (
            self.status is not InvitationStatus.PENDING
            or self.window_opened
            or now < self.valid_from
            or now >= self.valid_until
        ):
            return None
        return InvitationSendDue(
            invitation_id=self.invitation_id,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )

    def remind(self, *, now: datetime, before_expiry: timedelta) -> InvitationReminderDue | None:
        """Once, ``before_expiry`` ahead of ``valid_until``, while still pending and open."""
        if (
            self.status is not InvitationStatus.PENDING
            or self.reminders > 0
            or not self.window_opened
            or now < self.valid_until - before_expiry
            or now >= self.valid_until
        ):
            return None
        return InvitationReminderDue(
            invitation_id=self.invitation_id,
            reminder_number=self.reminders + 1,
            valid_until=self.valid_until,
        )

    def view_url(self, *, by: UUID, endpoint: str) -> InvitationUrlViewed:
        """Showing the code again is allowed in any status, and always leaves a trace."""
        return InvitationUrlViewed(invitation_id=self.invitation_id, viewed_by=by,
                                   endpoint=endpoint)


_REFUSALS: dict[InvitationStatus, Literal["revoked", "expired", "already_accepted"]] = {
    InvitationStatus.REVOKED: "revoked",
    InvitationStatus.EXPIRED: "expired",
    InvitationStatus.ACCEPTED: "already_accepted",
}


def _apply(state: Invitation | None, event: EventData, at: datetime) -> Invitation:
    if isinstance(event, InvitationCreated):
        opened = event.valid_from <= at
        return Invitation(
            invitation_id=event.invitation_id,
            status=InvitationStatus.PENDING,
            inviter_id=event.inviter_id,
            valid_from=event.valid_from,
            valid_until=event.valid_until,
            version=1,
            window_opened=opened,
            last_sent_at=at if opened else None,
            reminders=0,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before InvitationCreated")
    state = replace(state, version=state.version + 1)
    if isinstance(event, InvitationResent):
        return replace(state, last_sent_at=at)
    if isinstance(event, InvitationSendDue):
        return replace(state, window_opened=True, last_sent_at=at)
    if isinstance(event, InvitationReminderDue):
        return replace(state, reminders=event.reminder_number)
    if isinstance(event, InvitationRevoked):
        return replace(state, status=InvitationStatus.REVOKED)
    if isinstance(event, InvitationAccepted):
        return replace(state, status=InvitationStatus.ACCEPTED, accepted_user_id=event.user_id)
    if isinstance(event, InvitationExpired):
        return replace(state, status=InvitationStatus.EXPIRED)
    return state  # views, refusals and newer types this reader does not know change nothing


def create_invitation(
    *,
    invitation_id: UUID,
    invitee_email: str,
    inviter_id: UUID,
    inviter_permissions: frozenset[str],
    roles: Sequence[tuple[str, RoleAssignment]],
    locale: str,
    greeting: str | None,
    valid_from: datetime | None,
    valid_until: datetime | None,
    now: datetime,
    existing_pending: UUID | None,
    code_hash: str,
    validity: ValidityPolicy,
    role_permissions: RolePermissions,
    batch_id: UUID | None = None,
) -> InvitationCreated:
    """Every rule of a new invitation, in the order a person fixes them."""
    start, end = validity_window(
        now=now, valid_from=valid_from, valid_until=valid_until, policy=validity
    )
    check_roles_grantable(
        roles, inviter_permissions=inviter_permissions, role_permissions=role_permissions
    )
    check_no_pending(existing_pending)
    return InvitationCreated(
        invitation_id=invitation_id,
        invitee_email=invitee_email,
        inviter_id=inviter_id,
        roles=tuple(assignment for _, assignment in roles),
        locale=locale,
        greeting=greeting,
        valid_from=start,
        valid_until=end,
        code_hash=code_hash,
        batch_id=batch_id,
    )
