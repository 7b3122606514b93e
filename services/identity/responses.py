"""What identity's routes answer: one pydantic model per body, so /openapi.json documents them.

``extra="forbid"`` makes a route that answers more than its model says fail
in the tests instead of leaking an undocumented field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.roles import Role, RoleAssignment, RoleScope
from services.identity.account_status import UserStatus


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamWritten(Answer):
    """A command's effect on its stream."""

    version: int = Field(description="The stream's version after the command.")
    position: str | None = Field(
        description="Token of the command's last event, for ?min_position= on read models; "
        "null when the command wrote nothing."
    )


class UserWritten(StreamWritten):
    user_id: UUID


class AccountStatus(UserWritten):
    status: UserStatus


class RoleGrantedAnswer(UserWritten):
    role: Role
    scope: RoleScope
    community_id: UUID | None


class DeletionScheduled(StreamWritten):
    delete_after: datetime = Field(description="When the account and its personal data go.")


class PlatformSettingsView(Answer):
    platform_id: UUID
    name: str
    requires_invitation: bool
    time_zone: str
    default_locale: str
    dormant_after_days: int | None
    changed_by: UUID | None = Field(description="Who set them; null: the defaults.")
    version: int


class PlatformSettingsWritten(PlatformSettingsView):
    position: str | None


class SessionTokens(Answer):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
    session_id: UUID
    user_id: UUID


class ServiceToken(Answer):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    client_id: str


class PersonalDataKey(Answer):
    subject_id: UUID
    key: str = Field(description="The AES-256 data key, base64url.")


class PublicKey(BaseModel):
    """One JWK; the members depend on the key type, these are the ones identity writes."""

    model_config = ConfigDict(extra="allow")

    kty: str
    kid: str
    alg: str
    use: str


class KeySet(Answer):
    keys: list[PublicKey]


class Profile(Answer):
    user_id: UUID
    email: str = Field(description="In clear, or [erased].")
    name: str | None
    locale: str
    status: UserStatus | None
    roles: list[RoleAssignment]
    permissions: list[str]
    registered_at: datetime | None
    locked_until: datetime | None
    suspended_until: datetime | None


# -- the data export ---------------------------------------------------------------


class ExportedEvent(Answer):
    """One event of the audit log that concerns the person, personal fields in clear."""

    sequence: int = Field(description="Its place in the audit log.")
    time: datetime
    type: str
    subject: str
    actor_id: str
    role: str = Field(description="How the event concerns the person, as the audit log says.")
    data: Any = Field(description="The event's data; '[erased]' where a key is gone.")
    withheld: list[str] = Field(
        default_factory=list,
        description="Fields left out: another person's data in an event this person caused.",
    )


class ActiveSession(Answer):
    session_id: UUID
    created_at: datetime
    expires_at: datetime


class Sessions(Answer):
    total: int = Field(description="Sign-ins ever kept (ended ones included).")
    last_signed_in_at: datetime | None
    active: list[ActiveSession]


class ScheduledChange(Answer):
    kind: Literal["reactivate", "delete"]
    due_at: datetime


class AccountRecords(Answer):
    """What identity keeps on the person outside events (never the password or its hash)."""

    password_changed_at: datetime | None
    via_invitation_id: UUID | None
    scheduled: list[ScheduledChange]


class DataExport(Answer):
    user_id: UUID
    generated_at: datetime
    profile: Profile
    account: AccountRecords
    sessions: Sessions
    timelines: list[str] = Field(description="The audit-log timelines the events come from.")
    events: list[ExportedEvent] = Field(description="In audit-log order.")
