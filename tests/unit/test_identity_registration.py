"""Who may register, given/when/then: the invitation check and what an account starts with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from schemas.identity import RoleGranted, UserEmailConfirmed, UserRegistered
from schemas.roles import RoleAssignment
from services.identity.registration import InvitationRefused, KnownInvitation, admit, register

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INVITATION = UUID("00000000-0000-0000-0000-00000000100a")
USER = UUID("00000000-0000-0000-0000-0000000000aa")
COMMUNITY = UUID("00000000-0000-0000-0000-00000000c001")
EMAIL_HASH = "a" * 64
ROLES = (RoleAssignment(role="platform_developer", scope="platform"),)
MEMBER = RoleAssignment(role="community_member", scope="community", community_id=COMMUNITY)


def invitation(**changes: object) -> KnownInvitation:
    fields: dict[str, object] = {
        "invitation_id": INVITATION, "status": "pending",
        "valid_from": NOW - timedelta(days=1), "valid_until": NOW + timedelta(days=30),
        "invitee_email_hash": EMAIL_HASH, "roles": ROLES,
    }
    return KnownInvitation(**(fields | changes))  # type: ignore[arg-type]


def test_given_an_invitation_only_platform_when_no_code_then_it_is_refused() -> None:
    with pytest.raises(InvitationRefused) as refused:
        admit(requires_invitation=True, code_given=False, invitation=None,
              email_hash=EMAIL_HASH, now=NOW)
    assert refused.value.code == "invitation-required"


def test_given_a_public_platform_when_no_code_then_the_account_waits_for_confirmation() -> None:
    admission = admit(requires_invitation=False, code_given=False, invitation=None,
                      email_hash=EMAIL_HASH, now=NOW)
    assert (admission.confirmed, admission.roles, admission.invitation) == (False, (), None)


@pytest.mark.parametrize(
    ("known", "code"),
    [
        (None, "invitation-unknown"),
        (invitation(status="revoked"), "invitation-revoked"),
        (invitation(status="accepted"), "invitation-used"),
        (invitation(status="expired"), "invitation-expired"),
        (invitation(valid_until=NOW), "invitation-expired"),
        (invitation(valid_from=NOW + timedelta(seconds=1)), "invitation-not-yet-valid"),
    ],
)
@pytest.mark.parametrize("requires_invitation", [True, False])
def test_given_a_code_that_does_not_open_the_door_then_registration_is_refused(
    known: KnownInvitation | None, code: str, requires_invitation: bool
) -> None:
    with pytest.raises(InvitationRefused) as refused:
        admit(requires_invitation=requires_invitation, code_given=True, invitation=known,
              email_hash=EMAIL_HASH, now=NOW)
    assert refused.value.code == code


def test_given_a_valid_code_for_the_same_email_then_the_account_is_active_with_its_roles() -> None:
    admission = admit(requires_invitation=True, code_given=True, invitation=invitation(),
                      email_hash=EMAIL_HASH, now=NOW)
    assert admission.confirmed
    assert admission.roles == ROLES


def test_given_a_valid_code_for_another_email_then_no_roles_and_confirmation_is_needed() -> None:
    admission = admit(requires_invitation=True, code_given=True, invitation=invitation(),
                      email_hash="b" * 64, now=NOW)
    assert (admission.confirmed, admission.roles) == (False, ())
    assert admission.invitation is not None


def test_when_registered_by_invitation_then_roles_are_granted_via_it() -> None:
    events = register(
        user_id=USER, email="cipher", name=None, locale="en", via_invitation_id=INVITATION,
        invitation_roles=ROLES, default_role=MEMBER, confirmed=True,
    )
    assert events == [
        UserRegistered(user_id=USER, email="cipher", locale="en", via_invitation_id=INVITATION),
        UserEmailConfirmed(user_id=USER),
        RoleGranted(user_id=USER, role="community_member", scope="community",
                    community_id=COMMUNITY),
        RoleGranted(user_id=USER, role="platform_developer", scope="platform",
                    via_invitation_id=INVITATION, privilege_escalation=True),
    ]


def test_when_registered_without_invitation_then_only_the_default_role() -> None:
    events = register(
        user_id=USER, email="cipher", name="N", locale="en", via_invitation_id=None,
        invitation_roles=(), default_role=MEMBER, confirmed=False,
    )
    assert [type(e) for e in events] == [UserRegistered, RoleGranted]


def test_when_pending_then_the_event_carries_the_sealed_confirmation_token() -> None:
    events = register(
        user_id=USER, email="cipher", name=None, locale="en", via_invitation_id=None,
        invitation_roles=(), default_role=MEMBER, confirmed=False,
        confirmation_token="pd1:delivery-key:sealed",
    )
    registered = events[0]
    assert isinstance(registered, UserRegistered)
    assert registered.confirmation_token == "pd1:delivery-key:sealed"


def test_when_an_invitation_confirmed_the_address_then_no_token_travels() -> None:
    events = register(
        user_id=USER, email="cipher", name=None, locale="en", via_invitation_id=INVITATION,
        invitation_roles=ROLES, default_role=MEMBER, confirmed=True,
        confirmation_token="pd1:delivery-key:sealed",
    )
    registered = events[0]
    assert isinstance(registered, UserRegistered) and registered.confirmation_token is None
