"""The event catalog, its checked-in JSON Schemas and AsyncAPI document, and the drift check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from eventkit.registry import EventData, EventRegistry, personal_fields
from schemas import access, identity, invitations, notifications
from schemas.catalog import EVENT_CLASSES, build_registry
from schemas.generate import PACKAGE_ROOT, drift, main, render, write
from schemas.roles import COMMUNITY_ROLES, PLATFORM_ROLES, RoleAssignment

USER = UUID("11111111-1111-4111-8111-111111111111")
ADMIN = UUID("22222222-2222-4222-8222-222222222222")
INVITATION = UUID("33333333-3333-4333-8333-333333333333")
COMMUNITY = UUID("44444444-4444-4444-8444-444444444444")
OTHER = UUID("55555555-5555-4555-8555-555555555555")
NOW = datetime(2025, 8, 25, 9, 0, tzinfo=UTC)
DIGEST = "ab" * 32

DELIVERY: dict[str, Any] = {
    "notification_id": OTHER, "template": "invitation", "locale": "de",
    "recipient_email": "ada@example.org", "cause_event_id": OTHER,
    "cause_type": "guestlist.invitations.InvitationCreated.v1",
    "cause_subject": str(INVITATION), "attempt": 1,
}
VIEWED: dict[str, Any] = {
    "actor_id": ADMIN, "subject_id": USER, "fields": ("email", "name"),
    "endpoint": "GET /v1/users/{user_id}", "purpose": "user_directory",
}

# One realistic instance of every event in the catalog.
SAMPLES: list[EventData] = [
    identity.UserRegistered(
        user_id=USER, email="ada@example.org", name="Ada Lovelace", locale="en",
        via_invitation_id=INVITATION,
    ),
    identity.UserEmailConfirmed(user_id=USER),
    identity.UserProfileUpdated(user_id=USER, name="Ada King", locale="en-GB"),
    identity.UserSuspended(
        user_id=USER, reason="spam reports", until=NOW + timedelta(days=7), suspended_by=ADMIN
    ),
    identity.UserReactivated(user_id=USER, reactivated_by=ADMIN),
    identity.UserLockedOut(user_id=USER, until=NOW + timedelta(minutes=15), failed_attempts=5),
    identity.LoginFailed(
        user_id=USER, failure="wrong_password", consecutive_failures=2, ip_address="192.0.2.7"
    ),
    identity.LoginSucceeded(
        user_id=USER, session_id=OTHER, expires_at=NOW + timedelta(hours=8),
        ip_address="2001:db8::7",
    ),
    identity.SessionsRevoked(user_id=USER, issued_before=NOW, cause="suspended"),
    identity.PasswordChanged(user_id=USER, via_reset=True),
    identity.PasswordResetRequested(user_id=USER, expires_at=NOW + timedelta(hours=1)),
    identity.RoleGranted(
        user_id=USER, role="community_facilitator", scope="community", community_id=COMMUNITY,
        granted_by=ADMIN, via_invitation_id=INVITATION,
    ),
    identity.RoleRevoked(
        user_id=USER, role="platform_tech_support", scope="platform", revoked_by=ADMIN
    ),
    identity.UserDataExported(user_id=USER, export_id=OTHER, requested_by=USER),
    identity.UserDeletionRequested(
        user_id=USER, requested_by=USER, delete_after=NOW + timedelta(days=30)
    ),
    identity.UserDeleted(user_id=USER),
    identity.PlatformSettingsChanged(
        platform_id=OTHER, name="Neighbourhood", requires_invitation=True,
        time_zone="Europe/Berlin", default_locale="de", changed_by=ADMIN,
    ),
    invitations.InvitationCreated(
        invitation_id=INVITATION, invitee_email="ada@example.org", inviter_id=ADMIN,
        roles=(
            RoleAssignment(role="platform_developer", scope="platform"),
            RoleAssignment(role="community_organizer", scope="community", community_id=COMMUNITY),
        ),
        locale="de", greeting="Willkommen!", valid_from=NOW, valid_until=NOW + timedelta(days=30),
        code_hash=DIGEST,
    ),
    invitations.InvitationResent(invitation_id=INVITATION, resent_by=ADMIN),
    invitations.InvitationReminderDue(
        invitation_id=INVITATION, reminder_number=1, valid_until=NOW + timedelta(days=30)
    ),
    invitations.InvitationRevoked(invitation_id=INVITATION, revoked_by=ADMIN, reason="typo"),
    invitations.InvitationAccepted(invitation_id=INVITATION, user_id=USER),
    invitations.InvitationExpired(invitation_id=INVITATION, valid_until=NOW),
    invitations.InvitationSendDue(
        invitation_id=INVITATION, valid_from=NOW, valid_until=NOW + timedelta(days=30)
    ),
    invitations.InvitationUrlViewed(
        invitation_id=INVITATION, viewed_by=ADMIN, endpoint="GET /v1/invitations/{id}/url"
    ),
    invitations.InvitationAcceptanceRefused(
        invitation_id=INVITATION, user_id=USER, reason="revoked", registered_at=NOW
    ),
    notifications.NotificationSent(**DELIVERY),
    notifications.NotificationFailed(
        **{**DELIVERY, "attempt": 3}, error="451 try again later", permanent=False
    ),
    access.IdentityPersonalDataViewed(**VIEWED),
    access.ProjectionsPersonalDataViewed(**{**VIEWED, "endpoint": "GET /v1/dashboards/users"}),
    access.InvitationsPersonalDataViewed(
        **{**VIEWED, "subject_id": INVITATION, "endpoint": "GET /v1/invitations/{invitation_id}"}
    ),
    access.AuditLogQueried(
        actor_id=ADMIN, endpoint="GET /v1/audit/entries", filters={"subject": str(USER)},
        result_count=12,
    ),
    access.AuditLogExported(
        actor_id=None, export_id=OTHER, entry_count=1200, export_sha256=DIGEST
    ),
    access.AuditReplayStarted(actor_id=None, replay_id=OTHER, target="user_directory"),
]


def load_schema(event_class: type[EventData]) -> dict[str, Any]:
    path = PACKAGE_ROOT / "json" / f"{event_class.event_type}.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def test_every_event_in_the_catalog_has_a_sample_here() -> None:
    assert sorted(str(type(sample).event_type) for sample in SAMPLES) == sorted(
        build_registry().types()
    )


def test_the_catalog_covers_every_event_design_names() -> None:
    named = {
        "identity": "UserRegistered UserEmailConfirmed UserProfileUpdated UserSuspended "
        "UserReactivated UserLockedOut LoginFailed LoginSucceeded SessionsRevoked "
        "PasswordChanged PasswordResetRequested RoleGranted RoleRevoked UserDataExported "
        "UserDeletionRequested UserDeleted PlatformSettingsChanged PersonalDataViewed",
        "invitations": "InvitationCreated InvitationResent InvitationReminderDue "
        "InvitationRevoked InvitationAccepted InvitationExpired "
        # Added by the invitations service (docs/DESIGN.md, "Invitations").
        "InvitationSendDue InvitationUrlViewed InvitationAcceptanceRefused PersonalDataViewed",
        "notifications": "NotificationSent NotificationFailed",
        "audit": "AuditLogQueried AuditLogExported AuditReplayStarted",
        "projections": "PersonalDataViewed",
    }
    expected = {
        f"guestlist.{service}.{name}.v1" for service, names in named.items()
        for name in names.split()
    }
    assert set(build_registry().types()) == expected


def test_each_service_writes_only_the_topics_design_gives_it() -> None:
    assert {(cls.event_type.service, cls.topic) for cls in EVENT_CLASSES} == {
        ("identity", "identity.user"), ("identity", "identity.platform"),
        ("identity", "identity.access"), ("invitations", "invitations.invitation"),
        ("invitations", "invitations.access"),
        ("notifications", "notifications.delivery"), ("audit", "audit.access"),
        ("projections", "projections.access"),
    }


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_a_sample_of_every_event_fits_its_checked_in_json_schema(sample: EventData) -> None:
    registry = build_registry()
    schema = load_schema(type(sample))
    data = json.loads(registry.encode(sample))

    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    # and a reader decodes what a writer encoded
    assert registry.decode_data(str(sample.event_type), data) == sample


def test_a_subscriber_validating_with_the_schema_tolerates_a_newly_added_field() -> None:
    schema = load_schema(identity.UserSuspended)
    newer = {"user_id": str(USER), "reason": "spam", "appeal_url": "https://example.org/appeal"}

    jsonschema.validate(newer, schema, cls=jsonschema.Draft202012Validator)


def test_the_schema_refuses_data_the_model_refuses() -> None:
    schema = load_schema(invitations.InvitationCreated)
    plain_code = {
        "invitation_id": str(INVITATION), "invitee_email": "ada@example.org",
        "inviter_id": str(ADMIN), "locale": "de", "valid_from": "2025-08-25T09:00:00Z",
        "valid_until": "2025-09-25T09:00:00Z", "code_hash": "WELCOME-2025",
    }

    with pytest.raises(jsonschema.ValidationError, match=r"code_hash|WELCOME"):
        jsonschema.validate(plain_code, schema, cls=jsonschema.Draft202012Validator)


def test_personal_data_is_marked_where_design_says_it_lives() -> None:
    assert personal_fields(identity.UserRegistered) == ("email", "name", "confirmation_token")
    assert personal_fields(identity.PasswordResetRequested) == ("reset_token", "email")
    assert personal_fields(identity.UserDeleted) == ("email",)
    assert personal_fields(identity.LoginFailed) == ("ip_address",)
    assert personal_fields(invitations.InvitationCreated) == (
        "invitee_email", "greeting", "invitation_code"
    )
    assert personal_fields(notifications.NotificationSent) == ("recipient_email",)
    schema = load_schema(invitations.InvitationCreated)
    assert schema["properties"]["invitee_email"]["x-personal-data"] is True


def test_a_platform_role_cannot_be_granted_for_a_community() -> None:
    with pytest.raises(ValidationError, match="platform role"):
        identity.RoleGranted(
            user_id=USER, role="platform_manager", scope="community", community_id=COMMUNITY
        )
    with pytest.raises(ValidationError, match="needs its community_id"):
        RoleAssignment(role="community_member", scope="community")


def test_the_role_lists_are_those_of_design() -> None:
    assert len(PLATFORM_ROLES) == 8 and "platform_compliance_officer" in PLATFORM_ROLES
    assert len(COMMUNITY_ROLES) == 9 and COMMUNITY_ROLES[0] == "community_member"


def test_an_invitation_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValidationError, match="valid_until"):
        invitations.InvitationCreated(
            invitation_id=INVITATION, invitee_email="ada@example.org", inviter_id=ADMIN,
            locale="en", valid_from=NOW, valid_until=NOW, code_hash=DIGEST,
        )


def test_the_checked_in_contract_files_are_current() -> None:
    assert drift(render(build_registry()), PACKAGE_ROOT) == []
    assert main(["--check"]) == 0


def test_the_asyncapi_document_lists_every_topic_with_its_messages() -> None:
    document = yaml.safe_load((PACKAGE_ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))

    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["local"] == {
        "host": "127.0.0.1:9092", "protocol": "kafka",
        "description": document["servers"]["local"]["description"],
    }
    assert set(document["channels"]) == set(build_registry().topics())
    messages = document["channels"]["invitations.invitation"]["messages"]
    assert "guestlist.invitations.InvitationCreated.v1" in messages
    message = document["components"]["messages"]["guestlist.invitations.InvitationCreated.v1"]
    assert message["payload"] == {
        "$ref": "./json/guestlist.invitations.InvitationCreated.v1.json"
    }
    assert (PACKAGE_ROOT / message["payload"]["$ref"]).is_file()
    headers = document["components"]["schemas"]["CloudEventsKafkaHeaders"]
    assert set(headers["required"]) == {
        "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time",
        "content-type", "ce_actorid", "ce_sequence",
    }
    fixed = message["headers"]["allOf"][1]["properties"]
    assert fixed["ce_source"] == {"const": "/guestlist/invitations"}


def test_generating_twice_gives_the_same_bytes() -> None:
    assert render(build_registry()) == render(build_registry())


def test_a_changed_model_is_reported_as_drift(tmp_path: Path) -> None:
    # given a directory holding the contracts as they are now
    write(render(build_registry()), tmp_path)
    assert drift(render(build_registry()), tmp_path) == []

    # when a model gains a field and the files are not regenerated
    class UserSuspended(
        EventData, service="identity", name="UserSuspended", version=1, topic="identity.user"
    ):
        user_id: UUID
        reason: str
        appeal_url: str | None = None

    altered = [UserSuspended if cls is identity.UserSuspended else cls for cls in EVENT_CLASSES]
    problems = drift(render(EventRegistry(altered)), tmp_path)

    # then the check names the schema file of that event, and only reports differences
    assert "differs: json/guestlist.identity.UserSuspended.v1.json" in problems
    assert all(problem.startswith("differs: ") for problem in problems)


def test_missing_and_extra_schema_files_are_reported(tmp_path: Path) -> None:
    expected = render(build_registry())
    write(expected, tmp_path)
    (tmp_path / "json" / "guestlist.identity.UserDeleted.v1.json").unlink()
    (tmp_path / "json" / "guestlist.identity.UserForgotten.v1.json").write_text("{}\n")

    assert drift(expected, tmp_path) == [
        "missing: json/guestlist.identity.UserDeleted.v1.json",
        "extra: json/guestlist.identity.UserForgotten.v1.json",
    ]
    assert main(["--check", "--root", str(tmp_path)]) == 1

    # and writing makes the directory current again, removing the stale file
    write(expected, tmp_path)
    assert drift(expected, tmp_path) == []
