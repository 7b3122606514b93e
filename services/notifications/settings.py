"""The notifications service's settings: every variable of eventkit's ServiceSettings, and its own.

SMTP: ``SMTP_HOST``/``SMTP_PORT``, ``SMTP_SECURITY`` (``none``, ``starttls``
or ``tls``), ``SMTP_USERNAME``/``SMTP_PASSWORD``. Retries: ``DELIVERY_ATTEMPTS``
tries in all, the n-th retry after ``RETRY_BASE_DELAY`` * 2^(n-1) seconds, at
most ``RETRY_MAX_DELAY``. Personal data is opened with keys from identity and
invitations, fetched with the service client ``SERVICE_CLIENT_ID`` /
``SERVICE_CLIENT_SECRET`` that identity knows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from eventkit.settings import KeyReaderSettings, Port

DEV_RECIPIENT_HASH_KEY = "guestlist-local-development-recipient-hashes"


class NotificationsSettings(KeyReaderSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["notifications"] = "notifications"
    http_port: Port = 8003

    smtp_host: str = Field(default="127.0.0.1", min_length=1)
    smtp_port: Port = 1025
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)

    mail_from: str = Field(default="Guestlist <no-reply@guestlist.local>", min_length=3)
    # The right-hand side of every Message-ID: <notification id@domain>.
    message_id_domain: str = Field(default="guestlist.local", pattern=r"^[A-Za-z0-9.-]+$")
    contact_email: str = Field(default="support@guestlist.local", min_length=3)
    # Where an invitee registers; the code is appended as ?code=... (as invitations does).
    invitation_url_base: str = "http://127.0.0.1:8001/register"
    # Identity's public address: confirmation and reset links are <this>/confirm?token=...
    # and <this>/reset?token=...
    identity_public_url: str = "http://127.0.0.1:8001"

    delivery_attempts: int = Field(default=5, ge=1, le=50)
    retry_base_delay: timedelta = Field(default=timedelta(seconds=30), gt=timedelta(0))
    retry_max_delay: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    # A mail handed to the server and not recorded as sent after this is tried again.
    send_lease: timedelta = Field(default=timedelta(minutes=2), gt=timedelta(0))
    delivery_poll_interval: float = Field(default=1.0, gt=0)
    delivery_batch: int = Field(default=50, ge=1, le=1000)
    # At start-up, how long to wait for the consumers to join before serving anyway (s).
    startup_consumer_wait: float = Field(default=30.0, ge=0)

    recipient_hash_key: SecretStr = SecretStr(DEV_RECIPIENT_HASH_KEY)

    # Identity's and invitations' key endpoints and the client: eventkit's KeyReaderSettings.
    service_client_id: str = "notifications"

    # Topics read; overridable so tests can run on topics of their own.
    user_topic: str = "identity.user"
    platform_topic: str = "identity.platform"
    invitation_topic: str = "invitations.invitation"

    @field_validator("retry_base_delay", "retry_max_delay", "send_lease", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # RETRY_BASE_DELAY=30 means seconds; ISO 8601 (PT30S) still works.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> Self:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD go together")
        return self

    @property
    def uses_dev_hash_key(self) -> bool:
        return self.recipient_hash_key.get_secret_value() == DEV_RECIPIENT_HASH_KEY
