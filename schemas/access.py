"""Access events: who read personal data or the audit log, on ``<service>.access``.

Every service that reveals personal data writes these to a topic of its own,
under its own type name (``ce_type`` carries the service, as ``ce_source``
does): ``guestlist.identity.PersonalDataViewed.v1`` and
``guestlist.projections.PersonalDataViewed.v1`` are two types with one shape.
So each shape is an abstract base here, and each emitting service gets a
concrete subclass declaring its identity; a reader that does not care who
emitted it tests ``isinstance(event, PersonalDataViewed)``. A service that
starts revealing personal data adds one subclass and its topic to DESIGN.md.

The audit log is only revealed by the audit service, so the AuditLog* events
exist once, from audit.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from eventkit.registry import EventData
from schemas.values import Digest, Endpoint, Identifier

IDENTITY_ACCESS_TOPIC = "identity.access"
PROJECTIONS_ACCESS_TOPIC = "projections.access"
INVITATIONS_ACCESS_TOPIC = "invitations.access"
AUDIT_ACCESS_TOPIC = "audit.access"

Actor = Annotated[
    UUID | None,
    Field(description="The user who read; null for an operator at the command line."),
]


class PersonalDataViewed(EventData):
    """Someone's personal data was shown through an API: one event per person shown."""

    actor_id: Actor
    subject_id: UUID = Field(description="The person whose data was shown.")
    fields: tuple[Identifier, ...] = Field(min_length=1, description="e.g. email, name.")
    endpoint: Endpoint
    purpose: Identifier = Field(description="Why the route shows it, e.g. user_directory.")


class IdentityPersonalDataViewed(
    PersonalDataViewed,
    service="identity",
    name="PersonalDataViewed",
    version=1,
    topic=IDENTITY_ACCESS_TOPIC,
):
    """Identity showed someone's profile, e-mail or login history."""


class ProjectionsPersonalDataViewed(
    PersonalDataViewed,
    service="projections",
    name="PersonalDataViewed",
    version=1,
    topic=PROJECTIONS_ACCESS_TOPIC,
):
    """A dashboard read model showed someone's personal data."""


class InvitationsPersonalDataViewed(
    PersonalDataViewed,
    service="invitations",
    name="PersonalDataViewed",
    version=1,
    topic=INVITATIONS_ACCESS_TOPIC,
):
    """The invitations service showed an invitee's data; the subject is the invitation id."""


class AuditLogQueried(
    EventData, service="audit", name="AuditLogQueried", version=1, topic=AUDIT_ACCESS_TOPIC
):
    """Someone searched the audit log; the entries shown may hold personal data."""

    actor_id: Actor
    endpoint: Endpoint
    filters: dict[Identifier, str] = Field(default_factory=dict)
    result_count: int = Field(ge=0)


class AuditLogExported(
    EventData, service="audit", name="AuditLogExported", version=1, topic=AUDIT_ACCESS_TOPIC
):
    """A part of the audit log left the system as a file."""

    actor_id: Actor
    export_id: UUID
    filters: dict[Identifier, str] = Field(default_factory=dict)
    entry_count: int = Field(ge=0)
    export_sha256: Digest = Field(description="SHA-256 of the exported file, to prove it later.")


class AuditReplayStarted(
    EventData, service="audit", name="AuditReplayStarted", version=1, topic=AUDIT_ACCESS_TOPIC
):
    """The log is being re-delivered, e.g. to rebuild a read model."""

    actor_id: Actor
    replay_id: UUID
    target: Identifier = Field(description=(
        "What receives the replay as an identifier: the target topic with every character "
        "other than a-z, 0-9 and _ written as _ (target_topic has the exact name)."))
    from_sequence: int = Field(default=0, ge=0, description="First log entry replayed.")
    # Added later, optional so that events written before still read as v1.
    target_topic: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="The Kafka topic the events are published to, e.g. projections.users.replay.")
    to_sequence: int | None = Field(default=None, ge=1, description="Last log entry replayed.")
    types: tuple[Annotated[str, StringConstraints(max_length=200)], ...] | None = Field(
        default=None, max_length=100,
        description="Only events of these ce_type values; null: every type.")
    subjects: tuple[Annotated[str, StringConstraints(min_length=1, max_length=200)], ...] | None = (
        Field(default=None, max_length=1000,
              description="Only events with one of these ce_subject values; null: every subject."))


ACCESS_EVENTS: tuple[type[EventData], ...] = (
    IdentityPersonalDataViewed,
    ProjectionsPersonalDataViewed,
    InvitationsPersonalDataViewed,
    AuditLogQueried,
    AuditLogExported,
    AuditReplayStarted,
)
