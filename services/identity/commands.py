"""What a caller may ask identity to do: the request bodies, validated at the edge.

Plain-text formats (e-mail, locale list, time zone) are checked here; the
event contracts only bound lengths because their personal fields hold ciphertext.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from schemas.roles import Role, RoleScope, check_scope

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("is not an e-mail address")
    return value


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError("is not an IANA time zone, e.g. Europe/Berlin") from error
    return value


EmailAddress = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email)]
Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SupportedLocale = Literal["en", "es", "fr", "uk"]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterUser(Command):
    email: EmailAddress
    password: Password
    name: DisplayName | None = None
    locale: SupportedLocale | None = None
    invitation_code: Secret | None = None


class ConfirmEmail(Command):
    token: Secret


class SignIn(Command):
    email: EmailAddress
    password: Password


class RefreshSession(Command):
    refresh_token: Secret


class ChangePassword(Command):
    current_password: Password
    new_password: Password


class RequestPasswordReset(Command):
    email: EmailAddress


class ResetPassword(Command):
    token: Secret
    new_password: Password


class SuspendUser(Command):
    reason: Reason
    until: AwareDatetime | None = None


class DeleteUser(Command):
    reason: Reason


class GrantRole(Command):
    role: Role
    scope: RoleScope
    community_id: UUID | None = None

    @model_validator(mode="after")
    def _scope_matches_role(self) -> Self:
        check_scope(self.role, self.scope, self.community_id)
        return self


class UpdateProfile(Command):
    name: DisplayName | None = None
    locale: SupportedLocale | None = None


class PlatformSettingsBody(Command):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    requires_invitation: bool = True
    time_zone: Annotated[str, StringConstraints(max_length=64), AfterValidator(_time_zone)]
    default_locale: SupportedLocale
    dormant_after_days: int = Field(ge=1, le=3650)


class ServiceTokenRequest(Command):
    client_id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
    client_secret: Annotated[SecretStr, Field(max_length=512)]


def password_problem(password: str, email: str | None, minimum: int) -> str | None:
    """Why ``password`` is not acceptable, or None."""
    if len(password) < minimum:
        return f"must be at least {minimum} characters"
    if email is not None and password.strip().lower() == email.strip().lower():
        return "must not be the e-mail address"
    return None


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
