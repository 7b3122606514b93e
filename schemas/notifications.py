"""Events of the notifications service, on ``notifications.delivery``.

A delivery names the event that caused it (its ``ce_id``, ``ce_type`` and
``ce_subject``), so the service that owns that subject, e.g. invitations for
"last sent", can follow its own e-mails without knowing notification ids.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from eventkit.registry import EventData
from schemas.values import Digest, Email, Identifier, Locale

DELIVERY_TOPIC = "notifications.delivery"


class _Delivery(EventData):
    notification_id: UUID
    template: Identifier = Field(description="Which message, e.g. invitation or password_reset.")
    locale: Locale
    recipient_email: Email
    recipient_user_id: UUID | None = Field(
        default=None, description="null when the recipient has no account yet (an invitee)."
    )
    cause_event_id: UUID = Field(description="ce_id of the event this e-mail answers.")
    cause_type: str = Field(min_length=1, max_length=200, description="Its ce_type.")
    cause_subject: str = Field(min_length=1, max_length=200, description="Its ce_subject.")
    attempt: int = Field(ge=1, description="1 for the first try, counting retries.")
    message_id: str | None = Field(
        default=None, max_length=300,
        description="The Message-ID header, the same on every attempt of this notification.",
    )
    recipient_hash: Digest | None = Field(
        default=None,
        description="Keyed hash of the address (lower-cased): deliveries to one address can be "
        "matched without it; null when the address could not be read.",
    )


class NotificationSent(
    _Delivery,
    service="notifications",
    name="NotificationSent",
    version=1,
    topic=DELIVERY_TOPIC,
):
    """The mail server accepted the message."""


class NotificationFailed(
    _Delivery,
    service="notifications",
    name="NotificationFailed",
    version=1,
    topic=DELIVERY_TOPIC,
):
    """A delivery attempt failed; ``permanent`` says whether it will be tried again."""

    # Not marked personal, so the sender strips the address from SMTP replies.
    error: str = Field(
        min_length=1, max_length=2000, description="Why; never repeats the recipient address."
    )
    permanent: bool


DELIVERY_EVENTS: tuple[type[EventData], ...] = (NotificationSent, NotificationFailed)
