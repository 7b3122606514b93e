"""What the notifications service sends, to whom and when; pure, no I/O.

``MAILS`` is the table: one entry per event type that causes e-mail, each a
small function from the event (and what the service knows about its
invitation) to the mails it asks for. Adding a notification is one template
pair under ``templates/`` and one line here.

Personal values (addresses, names, greetings, invitation codes, confirmation
and reset tokens) only ever pass through here in their sealed form, as the
events carry them; they are revealed at send time, so what the service stores
stays encrypted. Identity seals tokens, and the address of the deletion
notice, under *delivery keys* that only this service may fetch and only until
they expire; afterwards they read as erased like any other value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventkit.registry import EventData
from schemas.identity import (
    PasswordResetRequested,
    RoleGranted,
    RoleRevoked,
    UserDeleted,
    UserLockedOut,
    UserReactivated,
    UserRegistered,
    UserSuspended,
)
from schemas.invitations import (
    InvitationCreated,
    InvitationReminderDue,
    InvitationResent,
    InvitationSendDue,
)

SUPPORTED_LOCALES: tuple[str, ...] = ("en", "es", "fr", "uk")
# Shown instead of a personal value whose key was destroyed (DESIGN.md "Personal data").
ERASED = "[erased]"
# Message-IDs and notification ids are derived from this, so they are the same on every replica.
_NOTIFICATION_NAMESPACE = UUID("9a0d7c43-6f0e-4c8e-9d39-3f1b6a1c2e57")


class TemplateName(StrEnum):
    INVITATION = "invitation"
    INVITATION_REMINDER = "invitation_reminder"
    ADDRESS_CONFIRMATION = "address_confirmation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a template name, not a password
    ACCOUNT_SUSPENDED = "account_suspended"
    ACCOUNT_REACTIVATED = "account_reactivated"
    ACCOUNT_DELETED = "account_deleted"
    ROLE_GRANTED = "role_granted"
    ROLE_REVOKED = "role_revoked"
    ACCOUNT_LOCKED = "account_locked"


class DeliveryStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time (next attempt, or the invitation's window)
    SENDING = "sending"  # handed to the SMTP server, answer not yet recorded
    SENT = "sent"
    FAILED = "failed"  # permanent answer, or every attempt used up
    CANCELLED = "cancelled"  # no longer wanted: invitation closed, address erased, …


@dataclass(frozen=True, slots=True)
class Platform:
    """The local copy of identity's platform settings that mails need."""

    name: str = "Guestlist"
    time_zone: str = "UTC"
    default_locale: str = "en"


@dataclass(frozen=True, slots=True)
class InvitationFacts:
    """What the service keeps of an invitation (from InvitationCreated and its later events)."""

    invitation_id: UUID
    invitee_email: str  # sealed
    locale: str
    roles: tuple[Mapping[str, Any], ...]
    valid_from: datetime
    valid_until: datetime
    status: str = "pending"
    greeting: str | None = None  # sealed


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What the service keeps of a person with an account (from identity's user events)."""

    user_id: UUID
    email: str  # sealed
    locale: str
    name: str | None = None  # sealed


@dataclass(frozen=True, slots=True)
class Known:
    """What a rule may consult besides the event: its time, the local copies, its extras.

    ``extras`` are sealed values read from the event's data by name, so a field
    a producer adds (``invitation_code``, ``confirmation_token``, ``reset_token``,
    the ``email`` of a reset or a deletion) is used as soon as it appears; a rule
    that needs one and does not find it asks for nothing, or records the mail as
    cancelled with the reason.
    """

    at: datetime
    person: PersonFacts | None = None
    invitation: InvitationFacts | None = None
    extras: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedMail:
    """One e-mail an event asks for, before it is stored for delivery."""

    template: TemplateName
    recipient: str  # sealed address
    locale: str
    user_id: UUID | None = None
    invitation_id: UUID | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # plain, not personal
    sealed: Mapping[str, str] = field(default_factory=dict)  # personal, revealed at send time
    not_before: datetime | None = None
    not_after: datetime | None = None
    # Why it must not go out after all (e.g. no invitation code); kept in the log as cancelled.
    cancelled_because: str | None = None


Rule = Callable[[Any, Known], list[PlannedMail]]


def _to_person(
    template: TemplateName, params: Callable[[Any], Mapping[str, Any]] = lambda _event: {}
) -> Rule:
    """A notice to the account holder the event is about."""

    def rule(event: Any, known: Known) -> list[PlannedMail]:
        person = known.person
        if person is None:
            return []  # an account this service never saw registered: nobody to write to
        sealed = {"name": person.name} if person.name else {}
        return [PlannedMail(template, person.email, person.locale, user_id=person.user_id,
                            params=params(event), sealed=sealed)]

    return rule


def _invitation_mail(template: TemplateName, *, on_creation: bool = False) -> Rule:
    """The invitation e-mail, only ever inside the invitation's validity window.

    An invitation created ahead of its window is not mailed on creation:
    invitations announces ``InvitationSendDue`` when the window opens.
    """

    def rule(event: Any, known: Known) -> list[PlannedMail]:
        invitation = known.invitation
        if invitation is None or invitation.status != "pending":
            return []
        if on_creation and invitation.valid_from > known.at:
            return []
        code = known.extras.get("invitation_code")
        sealed = {"code": code} if code else {}
        if invitation.greeting:
            sealed["greeting"] = invitation.greeting
        return [PlannedMail(
            template, invitation.invitee_email, invitation.locale,
            invitation_id=invitation.invitation_id,
            params={"roles": [dict(role) for role in invitation.roles],
                    "valid_from": invitation.valid_from, "valid_until": invitation.valid_until},
            sealed=sealed,
            not_before=invitation.valid_from, not_after=invitation.valid_until,
            cancelled_because=None if code else "the invitation event carries no code",
        )]  # fmt: skip

    return rule


def _account_link(
    template: TemplateName, token_field: str, expiry: Callable[[Any], datetime | None]
) -> Rule:
    """A mail whose point is a secret token (the sender makes the link of it).

    Sent only when the event brings the token, to the address the event brings
    (a reset's) or else the one the person registered with.
    """

    def rule(event: Any, known: Known) -> list[PlannedMail]:
        person, token = known.person, known.extras.get(token_field)
        if person is None or token is None:
            return []
        sealed = {"token": token} | ({"name": person.name} if person.name else {})
        expires_at = expiry(event)
        return [PlannedMail(template, known.extras.get("email") or person.email, person.locale,
                            user_id=person.user_id, params={"expires_at": expires_at},
                            sealed=sealed, not_after=expires_at)]

    return rule


def _farewell(event: UserDeleted, known: Known) -> list[PlannedMail]:
    """The deletion notice, to the address the event carries under a delivery key.

    The person's own key went with the deletion, so the address kept here (and
    their name) no longer opens; the locale is not personal and stays known.
    """
    address = known.extras.get("email")
    if address is None:
        return []
    locale = known.person.locale if known.person else "en"
    return [PlannedMail(TemplateName.ACCOUNT_DELETED, address, locale, user_id=event.user_id)]


def _role(event: RoleGranted | RoleRevoked) -> dict[str, Any]:
    return {"role": {"role": event.role, "scope": event.scope}}


# The table: which event causes which mail. Read top to bottom, it is the whole policy.
MAILS: Mapping[type[EventData], Rule] = {
    InvitationCreated: _invitation_mail(TemplateName.INVITATION, on_creation=True),
    InvitationSendDue: _invitation_mail(TemplateName.INVITATION),
    InvitationResent: _invitation_mail(TemplateName.INVITATION),
    InvitationReminderDue: _invitation_mail(TemplateName.INVITATION_REMINDER),
    # An invitation that vouches for the address leaves the token out (identity appends
    # UserEmailConfirmed instead), and that event cancels a confirmation still waiting.
    UserRegistered: _account_link(TemplateName.ADDRESS_CONFIRMATION, "confirmation_token",
                                  lambda _e: None),
    PasswordResetRequested: _account_link(TemplateName.PASSWORD_RESET, "reset_token",
                                          lambda e: e.expires_at),
    UserSuspended: _to_person(TemplateName.ACCOUNT_SUSPENDED,
                              lambda e: {"reason": e.reason, "until": e.until}),
    UserReactivated: _to_person(TemplateName.ACCOUNT_REACTIVATED),
    UserDeleted: _farewell,
    RoleGranted: _to_person(TemplateName.ROLE_GRANTED, _role),
    RoleRevoked: _to_person(TemplateName.ROLE_REVOKED, _role),
    UserLockedOut: _to_person(TemplateName.ACCOUNT_LOCKED, lambda e: {"until": e.until}),
}  # fmt: skip


# Where the sender points a mail's token: <identity public URL><path>?token=<token>.
TOKEN_LINK_PATHS: Mapping[TemplateName, str] = {
    TemplateName.ADDRESS_CONFIRMATION: "/confirm",
    TemplateName.PASSWORD_RESET: "/reset",
}


def mails_for(event: EventData, known: Known) -> list[PlannedMail]:
    rule = MAILS.get(type(event))
    return rule(event, known) if rule is not None else []


def encode_params(params: Mapping[str, Any]) -> str:
    """Template values as stored: JSON, with moments kept as moments."""
    return json.dumps(params, default=_moment_to_json, separators=(",", ":"), sort_keys=True)


def decode_params(text: str | Mapping[str, Any]) -> dict[str, Any]:
    loaded = json.loads(text) if isinstance(text, str) else dict(text)
    return {name: _json_to_moment(value) for name, value in loaded.items()}


def _moment_to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$moment": value.astimezone(UTC).isoformat()}
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be a template value")


def _json_to_moment(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$moment"}:
        return datetime.fromisoformat(value["$moment"])
    return value


def notification_id(cause_event_id: UUID, template: TemplateName) -> UUID:
    """The same event and template always give the same notification (and Message-ID)."""
    return uuid5(_NOTIFICATION_NAMESPACE, f"{cause_event_id}/{template}")


def message_id(notification: UUID, *, domain: str) -> str:
    return f"<{notification}@{domain}>"


def within_window(now: datetime, not_before: datetime | None, not_after: datetime | None) -> bool:
    return (not_before is None or now >= not_before) and (not_after is None or now < not_after)


def retry_delay(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff after failed attempt number ``attempt`` (1, 2, …)."""
    delay: timedelta = base * (2 ** (attempt - 1))
    return min(cap, delay)


def is_temporary(smtp_code: int | None) -> bool:
    """4xx answers and no answer at all (connection trouble) are worth another try."""
    return smtp_code is None or 400 <= smtp_code < 500


def hash_recipient(address: str, *, key: bytes) -> str:
    """Keyed hash of the address: tells deliveries to one person apart without the address."""
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def mask_address(address: str) -> str:
    """What support staff see of an address: enough to recognise it, not to write to it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# What the preview endpoint fills each template with: a made-up person and invitation.
_SAMPLE_MOMENT = datetime(2030, 3, 14, 15, 30, tzinfo=UTC)
SAMPLE_PARAMS: Mapping[TemplateName, Mapping[str, Any]] = {
    TemplateName.INVITATION: {
        "greeting": "We would love to have you with us.",
        "roles": [{"role": "community_member", "scope": "community"},
                  {"role": "platform_tech_support", "scope": "platform"}],
        "link": "https://guestlist.example/register?code=SAMPLE-CODE",
        "code": "SAMPLE-CODE",
        "valid_from": _SAMPLE_MOMENT, "valid_until": _SAMPLE_MOMENT + timedelta(days=30),
    },
    TemplateName.INVITATION_REMINDER: {
        "greeting": "We would love to have you with us.",
        "roles": [{"role": "community_member", "scope": "community"}],
        "link": "https://guestlist.example/register?code=SAMPLE-CODE",
        "code": "SAMPLE-CODE",
        "valid_from": _SAMPLE_MOMENT, "valid_until": _SAMPLE_MOMENT + timedelta(days=3),
    },
    TemplateName.ADDRESS_CONFIRMATION: {
        "name": "Alex Example", "link": "https://guestlist.example/confirm?token=SAMPLE",
        "expires_at": _SAMPLE_MOMENT,
    },
    TemplateName.PASSWORD_RESET: {
        "name": "Alex Example", "link": "https://guestlist.example/reset?token=SAMPLE",
        "expires_at": _SAMPLE_MOMENT,
    },
    TemplateName.ACCOUNT_SUSPENDED: {
        "name": "Alex Example", "reason": "Repeated spam in the community forum.",
        "until": _SAMPLE_MOMENT,
    },
    TemplateName.ACCOUNT_REACTIVATED: {"name": "Alex Example"},
    TemplateName.ACCOUNT_DELETED: {"name": "Alex Example"},
    TemplateName.ROLE_GRANTED: {
        "name": "Alex Example", "role": {"role": "community_facilitator", "scope": "community"},
    },
    TemplateName.ROLE_REVOKED: {
        "name": "Alex Example", "role": {"role": "platform_developer", "scope": "platform"},
    },
    TemplateName.ACCOUNT_LOCKED: {"name": "Alex Example", "until": _SAMPLE_MOMENT},
}  # fmt: skip
