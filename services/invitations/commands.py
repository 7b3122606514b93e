"""What a caller may ask of the invitations service, validated where it enters."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.roles import DEFAULT_COMMUNITY_ROLE, CommunityRole, PlatformRole
from schemas.values import Locale, Reason

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("is not an e-mail address")
    return value


InviteeEmail = Annotated[
    str, AfterValidator(_email), Field(max_length=254, json_schema_extra={"format": "email"})
]
GreetingText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class CreateInvitation(BaseModel):
    """``POST /v1/invitations``: whom to invite, with which roles, for how long."""

    model_config = ConfigDict(extra="forbid")

    invitee_email: InviteeEmail = Field(examples=["ada@example.org"])
    platform_role: PlatformRole | None = None
    community_role: CommunityRole = DEFAULT_COMMUNITY_ROLE
    community_id: UUID | None = Field(
        default=None, description="The community the role is for; the default community if null."
    )
    locale: Locale | None = Field(
        default=None, description="Language of the e-mail; default: the platform's."
    )
    valid_from: AwareDatetime | None = Field(default=None, description="Default: now.")
    valid_until: AwareDatetime | None = Field(
        default=None, description="Default: valid_from plus the configured validity (30 days)."
    )
    greeting: GreetingText | None = None


class RevokeInvitation(BaseModel):
    """``POST /v1/invitations/{id}/revoke``: why (optional, not personal data)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class BulkRow(BaseModel):
    """One row of a bulk upload: the CSV columns, or a JSON object with these fields."""

    model_config = ConfigDict(extra="forbid")

    invitee_email: InviteeEmail
    platform_role: PlatformRole | None = None
    community_role: CommunityRole = DEFAULT_COMMUNITY_ROLE
    locale: Locale | None = None
    greeting: GreetingText | None = None
    valid_until: AwareDatetime | None = None

    def as_command(self) -> CreateInvitation:
        return CreateInvitation(
            invitee_email=self.invitee_email, platform_role=self.platform_role,
            community_role=self.community_role, locale=self.locale, greeting=self.greeting,
            valid_until=self.valid_until,
        )


class BulkInvitations(BaseModel):
    """``POST /v1/invitations/bulk`` as JSON; each row is checked on its own."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, object]] = Field(min_length=1, max_length=10_000)

