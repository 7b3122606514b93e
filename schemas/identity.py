"""Events of the identity service: ``identity.user`` and ``identity.platform``.

Every user event carries ``user_id`` (also the Kafka key and ``ce_subject``)
so a reader of the data alone knows whose it is. No password hashes appear
here. A confirmation or reset token, and the address a farewell goes to, travel
only sealed under a *delivery key*: a key of that one message, which identity
serves only to the notifications service and only until it expires; every
other reader finds it erased.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from eventkit.registry import PERSONAL, EventData
from schemas.roles import Role, RoleScope, check_scope
from schemas.values import (
    Digest,
    Email,
    IpAddress,
    Locale,
    PersonName,
    Reason,
    Timestamp,
    TimeZone,
)

USER_TOPIC = "identity.user"
PLATFORM_TOPIC = "identity.platform"

# A one-time token, always sealed under a delivery key (pd1:<key id>:...), never in clear.
SealedToken = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    PERSONAL,
    Field(description="A secret one-time token, encrypted under a delivery key that only "
          "the notifications service may fetch, until the token expires."),
]


class UserRegistered(
    EventData, service="identity", name="UserRegistered", version=1, topic=USER_TOPIC
):
    """A person created an account; it stays pending until the e-mail is confirmed."""

    user_id: UUID
    email: Email
    name: PersonName | None = None
    locale: Locale
    via_invitation_id: UUID | None = Field(
        default=None, description="The invitation accepted to register, if any."
    )
    confirmation_token: SealedToken | None = Field(
        default=None,
        description="The e-mail confirmation token, sealed; null when an invitation for this "
        "address confirmed it already.",
    )


class UserEmailConfirmed(
    EventData, service="identity", name="UserEmailConfirmed", version=1, topic=USER_TOPIC
):
    """The person proved they own the address; the account is active."""

    user_id: UUID


class UserProfileUpdated(
    EventData, service="identity", name="UserProfileUpdated", version=1, topic=USER_TOPIC
):
    """The profile after the change (the whole profile, not a diff)."""

    user_id: UUID
    name: PersonName | None = None
    locale: Locale


class UserSuspended(
    EventData, service="identity", name="UserSuspended", version=1, topic=USER_TOPIC
):
    """The account is disabled; its live sessions are revoked with it."""

    user_id: UUID
    reason: Reason
    until: Timestamp | None = Field(default=None, description="null: until reactivated.")
    suspended_by: UUID | None = Field(default=None, description="null: done by the system.")


class UserReactivated(
    EventData, service="identity", name="UserReactivated", version=1, topic=USER_TOPIC
):
    user_id: UUID
    reactivated_by: UUID | None = Field(
        default=None, description="null: a timed suspension ran out."
    )


class UserLockedOut(
    EventData, service="identity", name="UserLockedOut", version=1, topic=USER_TOPIC
):
    """Too many failed logins in a row; logins are refused until ``until``."""

    user_id: UUID
    until: Timestamp
    failed_attempts: int = Field(ge=1)


LoginFailure = Literal[
    "wrong_password",
    "email_unconfirmed",
    "account_suspended",
    "account_locked",
    "account_deleted",
]


class LoginFailed(EventData, service="identity", name="LoginFailed", version=1, topic=USER_TOPIC):
    """A login for a known account failed (unknown e-mails have no stream to land in)."""

    user_id: UUID
    failure: LoginFailure
    consecutive_failures: int = Field(ge=1)
    ip_address: IpAddress | None = None
    client_address_hash: Digest | None = Field(
        default=None,
        description="Keyed hash of the client's address: repeated sources can be told apart "
        "without keeping the address.",
    )


class LoginSucceeded(
    EventData, service="identity", name="LoginSucceeded", version=1, topic=USER_TOPIC
):
    user_id: UUID
    session_id: UUID
    expires_at: Timestamp
    ip_address: IpAddress | None = None


RevocationCause = Literal[
    "suspended",
    "deleted",
    "role_revoked",
    "password_changed",
    "user_request",
    "staff_request",
    "refresh_token_reused",
]


class SessionsRevoked(
    EventData, service="identity", name="SessionsRevoked", version=1, topic=USER_TOPIC
):
    """Tokens of the user issued before ``issued_before`` are refused from now on.

    With ``session_id`` only that session's tokens are (sign-out, a reused
    refresh token); without it, every session of the user.
    """

    user_id: UUID
    issued_before: Timestamp
    cause: RevocationCause
    session_id: UUID | None = Field(default=None, description="null: every session.")


class PasswordChanged(
    EventData, service="identity", name="PasswordChanged", version=1, topic=USER_TOPIC
):
    user_id: UUID
    via_reset: bool = Field(description="True when set through a password-reset link.")


class PasswordResetRequested(
    EventData, service="identity", name="PasswordResetRequested", version=1, topic=USER_TOPIC
):
    user_id: UUID
    expires_at: Timestamp
    reset_token: SealedToken | None = Field(default=None, description="The reset token, sealed.")
    email: Email | None = Field(
        default=None, description="The address the reset link goes to, sealed with the "
        "person's key."
    )


class _RoleChange(EventData):
    """Fields shared by RoleGranted and RoleRevoked, checked like a RoleAssignment."""

    user_id: UUID
    role: Role
    scope: RoleScope
    community_id: UUID | None = None

    @model_validator(mode="after")
    def _scope_matches_role(self) -> Self:
        check_scope(self.role, self.scope, self.community_id)
        return self


class RoleGranted(_RoleChange, service="identity", name="RoleGranted", version=1, topic=USER_TOPIC):
    granted_by: UUID | None = Field(
        default=None, description="null: granted by the system (default role, first admin)."
    )
    via_invitation_id: UUID | None = Field(
        default=None, description="The invitation whose roles this grant carries out."
    )
    privilege_escalation: bool = Field(
        default=False,
        description="True for a platform role: it widens what the person may do platform-wide.",
    )


class RoleRevoked(_RoleChange, service="identity", name="RoleRevoked", version=1, topic=USER_TOPIC):
    revoked_by: UUID | None = Field(default=None, description="null: revoked by the system.")


class UserDataExported(
    EventData, service="identity", name="UserDataExported", version=1, topic=USER_TOPIC
):
    """A copy of the user's personal data was handed out (GDPR access request)."""

    user_id: UUID
    export_id: UUID
    requested_by: UUID


class UserDeletionRequested(
    EventData, service="identity", name="UserDeletionRequested", version=1, topic=USER_TOPIC
):
    user_id: UUID
    requested_by: UUID
    delete_after: Timestamp = Field(description="When the deletion is carried out.")


class UserDeleted(EventData, service="identity", name="UserDeleted", version=1, topic=USER_TOPIC):
    """The account is gone and its personal-data key destroyed.

    Every personal field of this user, in any event anywhere, is unreadable from now on.
    """

    user_id: UUID
    reason: Reason | None = Field(default=None, description="Why staff deleted the account.")
    email: Email | None = Field(
        default=None, description="The address for the deletion notice, sealed under a "
        "delivery key (the person's key is gone) that expires after a few days."
    )


class PlatformSettingsChanged(
    EventData,
    service="identity",
    name="PlatformSettingsChanged",
    version=1,
    topic=PLATFORM_TOPIC,
):
    """The platform's settings after the change (all of them, not a diff)."""

    platform_id: UUID
    name: str = Field(min_length=1, max_length=200)
    requires_invitation: bool
    time_zone: TimeZone
    default_locale: Locale
    changed_by: UUID | None = Field(default=None, description="null: set by the system.")
    dormant_after_days: int | None = Field(
        default=None, ge=1, description="Accounts unused this long count as dormant."
    )


USER_EVENTS: tuple[type[EventData], ...] = (
    UserRegistered,
    UserEmailConfirmed,
    UserProfileUpdated,
    UserSuspended,
    UserReactivated,
    UserLockedOut,
    LoginFailed,
    LoginSucceeded,
    SessionsRevoked,
    PasswordChanged,
    PasswordResetRequested,
    RoleGranted,
    RoleRevoked,
    UserDataExported,
    UserDeletionRequested,
    UserDeleted,
)
PLATFORM_EVENTS: tuple[type[EventData], ...] = (PlatformSettingsChanged,)
