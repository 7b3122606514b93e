"""The identity service's settings: every variable of eventkit's ServiceSettings, and its own.

``IDENTITY_SECRET`` is the root of identity's own secrets: the keyed hashes of
e-mail and client addresses, and the keys that wrap personal-data keys and
signing keys at rest are derived from it (HKDF, one label each). Its default
is for the local stack only and is logged as such at start-up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from eventkit.settings import Port, ServiceSettings
from schemas.invitations import INVITATION_TOPIC

DEV_SECRET = "guestlist-local-development-only-secret"  # noqa: S105 - a public dev default
DEV_INVITATION_CODE_KEY = "guestlist-local-development-invitation-codes"


class IdentitySettings(ServiceSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["identity"] = "identity"
    http_port: Port = 8001

    identity_secret: SecretStr = SecretStr(DEV_SECRET)
    # Shared with the invitations service: both hash a presented code with it.
    invitation_code_key: SecretStr = SecretStr(DEV_INVITATION_CODE_KEY)
    # name=secret pairs of the services that may fetch personal-data keys.
    service_clients: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)

    access_token_ttl: timedelta = Field(default=timedelta(minutes=15), gt=timedelta(0))
    refresh_token_ttl: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    service_token_ttl: timedelta = Field(default=timedelta(minutes=15), gt=timedelta(0))
    signing_key_rotation: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))

    lockout_threshold: int = Field(default=5, ge=1)
    lockout_window: timedelta = Field(default=timedelta(minutes=15), gt=timedelta(0))
    lockout_duration: timedelta = Field(default=timedelta(minutes=15), gt=timedelta(0))

    password_min_length: int = Field(default=12, ge=8, le=128)
    confirmation_token_ttl: timedelta = Field(default=timedelta(days=2), gt=timedelta(0))
    password_reset_ttl: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    # At most RESET_MAIL_LIMIT reset mails per account within RESET_MAIL_WINDOW; more requests
    # are answered alike (202) and dropped by the scheduler.
    reset_mail_limit: int = Field(default=3, ge=1)
    reset_mail_window: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    # At most RESET_REQUEST_LIMIT reset requests per client address within RESET_REQUEST_WINDOW
    # (a 429 past it), counted in PostgreSQL for every replica.
    reset_request_limit: int = Field(default=10, ge=1)
    reset_request_window: timedelta = Field(default=timedelta(minutes=15), gt=timedelta(0))
    deletion_grace: timedelta = Field(default=timedelta(days=30), ge=timedelta(0))
    # How long the notifications service may open the address of the deletion notice.
    deletion_notice_ttl: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    scheduler_interval: float = Field(default=1.0, gt=0)

    # The audit log, where the data export reads the person's events from every service,
    # and how long an export waits for it to hold identity's latest events on the person.
    audit_url: str = "http://127.0.0.1:8004"
    export_audit_wait: float = Field(default=5.0, ge=0, le=60)
    # The invitations service, owner of the key an invitee's address is sealed under: identity
    # opens it (with a token it signs itself) to know whether a code vouches for an address.
    invitations_url: str = "http://127.0.0.1:8002"
    personal_data_cache_seconds: float = Field(default=30.0, ge=0)
    # Identity's copy of invitations: its consumer group and the topic it reads (two stacks
    # on one Kafka give each its own group).
    invitations_consumer_group: str = Field(default="identity", pattern=r"^[A-Za-z0-9._-]+$")
    invitation_topic: str = Field(default=INVITATION_TOPIC, pattern=r"^[A-Za-z0-9._-]+$")

    @field_validator("service_clients", mode="before")
    @classmethod
    def _clients(cls, value: object) -> object:
        # IDENTITY_SERVICE_CLIENTS / SERVICE_CLIENTS="audit=s3cret,projections=0ther".
        if isinstance(value, str):
            pairs = [item.strip() for item in value.split(",") if item.strip()]
            clients: dict[str, str] = {}
            for pair in pairs:
                name, separator, secret = pair.partition("=")
                if not separator or not name.strip() or len(secret) < 16:
                    raise ValueError("must be name=secret pairs, each secret 16+ characters")
                clients[name.strip()] = secret
            return clients
        return value

    @field_validator(
        "access_token_ttl", "refresh_token_ttl", "service_token_ttl", "signing_key_rotation",
        "lockout_window", "lockout_duration", "confirmation_token_ttl", "password_reset_ttl",
        "reset_mail_window", "reset_request_window", "deletion_grace", "deletion_notice_ttl",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @property
    def uses_dev_secret(self) -> bool:
        return self.identity_secret.get_secret_value() == DEV_SECRET
