"""Events of the invitations service, on ``invitations.invitation``.

The invitation code is a secret. Events carry its keyed hash, enough to tell
whether a presented code is the right one, and the events that make an e-mail
go out carry the code itself encrypted like personal data, under the key the
invitations service keeps for that invitation (the subject of the ciphertext
is the invitation id): notifications can put it into the e-mail, and erasing
the key makes every copy unreadable.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from eventkit.registry import PERSONAL, EventData
from schemas.roles import RoleAssignment
from schemas.values import Digest, Email, Endpoint, Greeting, Locale, Reason, Timestamp

INVITATION_TOPIC = "invitations.invitation"

# Marked personal so eventkit.personal_data encrypts it; never in clear on the wire.
InvitationCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    PERSONAL,
    Field(description="The invitation code, encrypted with the invitation's personal-data key."),
]


class InvitationCreated(
    EventData,
    service="invitations",
    name="InvitationCreated",
    version=1,
    topic=INVITATION_TOPIC,
):
    """An organizer invited someone; the invitation is pending from ``valid_from``.

    The e-mail goes out now when ``valid_from`` is not later than the event's
    time; otherwise ``InvitationSendDue`` follows when the window opens.
    """

    invitation_id: UUID
    invitee_email: Email
    inviter_id: UUID = Field(description="The user who created the invitation.")
    roles: tuple[RoleAssignment, ...] = Field(
        default=(), description="Granted on acceptance, on top of the default community role."
    )
    locale: Locale = Field(description="Language of the invitation e-mail.")
    greeting: Greeting | None = None
    valid_from: Timestamp
    valid_until: Timestamp
    code_hash: Digest = Field(description="Keyed hash of the invitation code, never the code.")
    batch_id: UUID | None = Field(
        default=None, description="The bulk upload that created it, if one did."
    )
    invitation_code: InvitationCode | None = None

    @model_validator(mode="after")
    def _validity_is_a_period(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class InvitationResent(
    EventData,
    service="invitations",
    name="InvitationResent",
    version=1,
    topic=INVITATION_TOPIC,
):
    """Someone asked for the invitation e-mail to go out again."""

    invitation_id: UUID
    resent_by: UUID
    invitation_code: InvitationCode | None = None


class InvitationReminderDue(
    EventData,
    service="invitations",
    name="InvitationReminderDue",
    version=1,
    topic=INVITATION_TOPIC,
):
    """A pending invitation should be brought back to the invitee's attention."""

    invitation_id: UUID
    reminder_number: int = Field(ge=1)
    valid_until: Timestamp
    invitation_code: InvitationCode | None = None


class InvitationRevoked(
    EventData,
    service="invitations",
    name="InvitationRevoked",
    version=1,
    topic=INVITATION_TOPIC,
):
    """Canceled by hand; the code no longer works (the guide's "Delete Invitation")."""

    invitation_id: UUID
    revoked_by: UUID
    reason: Reason | None = None


class InvitationAccepted(
    EventData,
    service="invitations",
    name="InvitationAccepted",
    version=1,
    topic=INVITATION_TOPIC,
):
    """The invitee registered with the invitation; ``user_id`` is the new account."""

    invitation_id: UUID
    user_id: UUID
    accepted_at: Timestamp | None = Field(
        default=None, description="When the invitee registered (the registration's time)."
    )


class InvitationExpired(
    EventData,
    service="invitations",
    name="InvitationExpired",
    version=1,
    topic=INVITATION_TOPIC,
):
    invitation_id: UUID
    valid_until: Timestamp


class InvitationSendDue(
    EventData,
    service="invitations",
    name="InvitationSendDue",
    version=1,
    topic=INVITATION_TOPIC,
):
    """The window of an invitation created ahead of time opened: its e-mail goes out now."""

    invitation_id: UUID
    valid_from: Timestamp
    valid_until: Timestamp
    invitation_code: InvitationCode | None = None


class InvitationUrlViewed(
    EventData,
    service="invitations",
    name="InvitationUrlViewed",
    version=1,
    topic=INVITATION_TOPIC,
):
    """An organizer was shown the invitation's URL and code again (an audited read)."""

    invitation_id: UUID
    viewed_by: UUID
    endpoint: Endpoint


class InvitationAcceptanceRefused(
    EventData,
    service="invitations",
    name="InvitationAcceptanceRefused",
    version=1,
    topic=INVITATION_TOPIC,
):
    """A registration named this invitation, but it could no longer be accepted.

    Identity admits a registration on its own, possibly lagging, copy of the
    invitation's history; this event records that the invitation was revoked,
    had expired, was not yet valid or was accepted by someone else by the
    registration's time. The account stays; the invitation does not change.
    """

    invitation_id: UUID
    user_id: UUID = Field(description="The account the registration created.")
    reason: Literal["revoked", "expired", "not_yet_valid", "already_accepted"]
    registered_at: Timestamp = Field(description="The registration's time, decided against.")


INVITATION_EVENTS: tuple[type[EventData], ...] = (
    InvitationCreated,
    InvitationResent,
    InvitationReminderDue,
    InvitationRevoked,
    InvitationAccepted,
    InvitationExpired,
    InvitationSendDue,
    InvitationUrlViewed,
    InvitationAcceptanceRefused,
)
