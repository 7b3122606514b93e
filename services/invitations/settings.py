"""The invitations service's settings: every variable of eventkit's ServiceSettings, and its own.

``INVITATIONS_SECRET`` is the root of the service's own secrets (the keyed
hash of invitee e-mails, the key that wraps invitation data keys at rest).
``INVITATION_CODE_KEY`` is shared with identity: both hash a presented code
with it. Both defaults are for the local stack only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from uuid import UUID

from pydantic import Field, SecretStr, field_validator

from eventkit.settings import Duration, Port, ServiceSettings
from schemas.roles import DEFAULT_COMMUNITY_ID
from schemas.values import Locale

DEV_SECRET = "guestlist-local-development-invitations-secret"  # noqa: S105 - public dev default
# Must equal identity's INVITATION_CODE_KEY (its default is this same text).
DEV_INVITATION_CODE_KEY = "guestlist-local-development-invitation-codes"


class InvitationsSettings(ServiceSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["invitations"] = "invitations"
    http_port: Port = 8002

    invitations_secret: SecretStr = SecretStr(DEV_SECRET)
    invitation_code_key: SecretStr = SecretStr(DEV_INVITATION_CODE_KEY)

    # Where an invitee registers; the code is appended as ?code=...
    invitation_url_base: str = "http://127.0.0.1:8001/register"
    # The platform's name and default locale until identity.platform says otherwise.
    platform_name: str = Field(default="Guestlist", min_length=1, max_length=200)
    platform_default_locale: Locale = "en"
    default_community_id: UUID = DEFAULT_COMMUNITY_ID

    # Lengths of time: whole seconds (RESEND_INTERVAL=900) or ISO 8601 (PT15M).
    invitation_validity: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    invitation_max_validity: Duration = Field(default=timedelta(days=365), gt=timedelta(0))
    resend_interval: Duration = Field(default=timedelta(minutes=15), ge=timedelta(0))
    inviter_send_limit: int = Field(default=10, ge=1)
    inviter_send_window: Duration = Field(default=timedelta(minutes=15), gt=timedelta(0))
    # InvitationReminderDue goes out this many days before valid_until (0: no reminder).
    reminder_days_before_expiry: int = Field(default=3, ge=0, le=365)

    # How often the scheduler looks for due expiries, reminders and opened windows (s).
    scheduler_interval: float = Field(default=10.0, gt=0)
    scheduler_batch: int = Field(default=200, ge=1)
    bulk_max_rows: int = Field(default=10_000, ge=1)
    # Public code lookups per client address and window, counted in PostgreSQL for all replicas.
    lookup_rate_limit: int = Field(default=30, ge=1)
    lookup_rate_window: Duration = Field(default=timedelta(minutes=1), gt=timedelta(0))

    # How long a read with min_position waits for that event at most (s).
    read_wait_seconds: float = Field(default=5.0, ge=0, le=60)

    # Topics read and written; overridable so tests can run on topics of their own.
    user_topic: str = "identity.user"
    delivery_topic: str = "notifications.delivery"
    platform_topic: str = "identity.platform"
    access_topic: str = "invitations.access"

    @field_validator("invitation_validity")
    @classmethod
    def _default_fits(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=365):
            raise ValueError("the default validity may be at most a year")
        return value

    @field_validator("invitation_max_validity")
    @classmethod
    def _at_most_a_year(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=365):
            raise ValueError("an invitation may be valid for at most a year")
        return value

    @property
    def reminder_before_expiry(self) -> timedelta:
        return timedelta(days=self.reminder_days_before_expiry)

    @property
    def uses_dev_secret(self) -> bool:
        return self.invitations_secret.get_secret_value() == DEV_SECRET
