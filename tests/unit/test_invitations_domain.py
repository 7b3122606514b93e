"""The invitation's rules, given/when/then: given these events, when this command, then this
event or this refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from eventkit.registry import EventData
from schemas.invitations import (
    InvitationAcceptanceRefused,
    InvitationAccepted,
    InvitationCreated,
    InvitationExpired,
    InvitationReminderDue,
    InvitationResent,
    InvitationRevoked,
    InvitationSendDue,
    InvitationUrlViewed,
)
from schemas.roles import RoleAssignment
from services.invitations.domain import (
    DuplicatePendingInvitation,
    InvalidValidity,
    Invitation,
    InvitationStatus,
    NotPending,
    NotYetValid,
    ResendPolicy,
    ResendThrottled,
    RoleNotGrantable,
    ValidityPolicy,
    create_invitation,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
INVITATION = UUID("11111111-1111-4111-8111-111111111111")
INVITER = UUID("22222222-2222-4222-8222-222222222222")
USER = UUID("33333333-3333-4333-8333-333333333333")
EXISTING = UUID("44444444-4444-4444-8444-444444444444")
COMMUNITY = UUID("55555555-5555-4555-8555-555555555555")
HASH = "a" * 64
DAYS = timedelta(days=1)

TABLE = {
    "platform_manager": frozenset({"manage_platform_roles", "manage_invitations", "read_person"}),
    "platform_developer": frozenset({"view_platform_logs"}),
    "community_member": frozenset({"view_community"}),
    "community_organizer": frozenset({"view_community", "manage_invitations"}),
}


def create(**overrides: object) -> InvitationCreated:
    arguments: dict[str, object] = {
        "invitation_id": INVITATION, "invitee_email": "ada@example.org", "inviter_id": INVITER,
        "inviter_permissions": frozenset({"manage_invitations", "view_community"}),
        "roles": [], "locale": "en", "greeting": None, "valid_from": None,
        "valid_until": None, "now": NOW, "existing_pending": None, "code_hash": HASH,
        "validity": ValidityPolicy(), "role_permissions": TABLE,
    }
    return create_invitation(**(arguments | overrides))  # type: ignore[arg-type]


def given(*events: tuple[EventData, datetime]) -> Invitation:
    return Invitation.replay(events)


def created(*, valid_from: datetime = NOW, days: int = 30) -> tuple[EventData, datetime]:
    return (
        InvitationCreated(
            invitation_id=INVITATION, invitee_email="ada@example.org", inviter_id=INVITER,
            locale="en", valid_from=valid_from, valid_until=valid_from + days * DAYS,
            code_hash=HASH,
        ),
        NOW,
    )


# --- creation ---------------------------------------------------------------------------


def test_when_no_window_is_given_then_it_is_valid_from_now_for_the_default_length() -> None:
    event = create()

    assert (event.valid_from, event.valid_until) == (NOW, NOW + 30 * DAYS)


def test_the_default_length_comes_from_the_policy() -> None:
    event = create(validity=ValidityPolicy(default_length=7 * DAYS))

    assert event.valid_until == NOW + 7 * DAYS


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "message"),
    [
        (NOW, NOW, "after valid_from"),
        (NOW + DAYS, NOW, "after valid_from"),
        (NOW, NOW + 366 * DAYS, "at most 365 days"),
        (NOW - 10 * DAYS, NOW - DAYS, "in the past"),
    ],
)
def test_a_window_that_is_empty_too_long_or_over_is_refused_naming_valid_until(
    valid_from: datetime, valid_until: datetime, message: str
) -> None:
    with pytest.raises(InvalidValidity, match=message) as refused:
        create(valid_from=valid_from, valid_until=valid_until)

    assert refused.value.field == "valid_until"


def test_a_window_of_exactly_a_year_is_allowed() -> None:
    assert create(valid_until=NOW + 365 * DAYS).valid_until == NOW + 365 * DAYS


def test_an_inviter_cannot_assign_a_role_carrying_permissions_they_lack() -> None:
    role = RoleAssignment(role="platform_manager", scope="platform")

    with pytest.raises(RoleNotGrantable, match="platform_manager") as refused:
        create(roles=[("platform_role", role)])

    assert refused.value.field == "platform_role"


def test_an_inviter_can_assign_a_role_whose_permissions_they_hold() -> None:
    role = RoleAssignment(role="community_organizer", scope="community", community_id=COMMUNITY)

    event = create(roles=[("community_role", role)])

    assert event.roles == (role,)


def test_a_role_missing_from_the_permission_table_is_never_grantable() -> None:
    role = RoleAssignment(role="platform_analytics_viewer", scope="platform")

    with pytest.raises(RoleNotGrantable):
        create(roles=[("platform_role", role)], inviter_permissions=frozenset({"everything"}))


def test_given_a_pending_invitation_for_the_address_when_inviting_again_then_409_names_it() -> (
    None
):
    with pytest.raises(DuplicatePendingInvitation) as refused:
        create(existing_pending=EXISTING)

    assert refused.value.existing_id == EXISTING
    assert str(EXISTING) in str(refused.value)


# --- state and transitions ----------------------------------------------------------------


def test_a_created_invitation_is_pending_and_sent() -> None:
    invitation = given(created())

    assert invitation.status is InvitationStatus.PENDING
    assert invitation.window_opened and invitation.last_sent_at == NOW
    assert invitation.version == 1


def test_given_a_future_window_then_nothing_is_sent_yet() -> None:
    invitation = given(created(valid_from=NOW + 2 * DAYS))

    assert not invitation.window_opened and invitation.last_sent_at is None


@pytest.mark.parametrize(
    ("final", "status"),
    [
        (InvitationRevoked(invitation_id=INVITATION, revoked_by=INVITER), "revoked"),
        (InvitationAccepted(invitation_id=INVITATION, user_id=USER), "accepted"),
        (InvitationExpired(invitation_id=INVITATION, valid_until=NOW), "expired"),
    ],
)
def test_given_a_final_status_then_nothing_more_can_happen(
    final: EventData, status: str
) -> None:
    invitation = given(created(), (final, NOW))

    assert invitation.status == status
    with pytest.raises(NotPending):
        invitation.revoke(by=INVITER, reason=None)
    with pytest.raises(NotPending):
        invitation.resend(by=INVITER, now=NOW + DAYS, inviter_sends=[], policy=ResendPolicy())
    with pytest.raises(NotPending):
        invitation.accept(user_id=USER, registered_at=NOW + DAYS)
    assert invitation.expire(now=NOW + 40 * DAYS) is None
    assert invitation.remind(now=NOW + 28 * DAYS, before_expiry=3 * DAYS) is None


def test_when_revoked_then_the_event_says_who_and_why() -> None:
    event = given(created()).revoke(by=INVITER, reason="sent to the wrong address")

    assert event == InvitationRevoked(
        invitation_id=INVITATION, revoked_by=INVITER, reason="sent to the wrong address"
    )


def test_when_the_invitee_registers_inside_the_window_then_it_is_accepted_at_that_time() -> None:
    event = given(created()).accept(user_id=USER, registered_at=NOW + DAYS)

    assert event == InvitationAccepted(
        invitation_id=INVITATION, user_id=USER, accepted_at=NOW + DAYS
    )


def test_given_a_future_valid_from_then_it_cannot_be_accepted_yet() -> None:
    with pytest.raises(NotYetValid):
        given(created(valid_from=NOW + DAYS)).accept(user_id=USER, registered_at=NOW)


def test_given_the_window_closed_but_not_yet_expired_then_it_is_not_accepted() -> None:
    with pytest.raises(NotPending, match="expired"):
        given(created(days=1)).accept(user_id=USER, registered_at=NOW + DAYS)


OTHER_USER = UUID("66666666-6666-4666-8666-666666666666")


def test_when_a_registration_names_a_pending_invitation_in_its_window_then_it_is_accepted() -> None:
    event = given(created()).register(user_id=USER, registered_at=NOW + DAYS)

    assert event == InvitationAccepted(
        invitation_id=INVITATION, user_id=USER, accepted_at=NOW + DAYS
    )


@pytest.mark.parametrize(
    ("history", "registered_at", "reason"),
    [
        ([(InvitationRevoked(invitation_id=INVITATION, revoked_by=INVITER), NOW)],
         NOW + DAYS, "revoked"),
        ([(InvitationExpired(invitation_id=INVITATION, valid_until=NOW), NOW)],
         NOW + DAYS, "expired"),
        ([(InvitationAccepted(invitation_id=INVITATION, user_id=OTHER_USER), NOW)],
         NOW + DAYS, "already_accepted"),
        # past valid_until, though no InvitationExpired was written yet
        ([], NOW + 31 * DAYS, "expired"),
        ([], NOW - DAYS, "not_yet_valid"),
    ],
)
def test_given_an_invitation_no_longer_acceptable_when_a_registration_names_it_then_it_is_refused(
    history: list[tuple[EventData, datetime]], registered_at: datetime, reason: str
) -> None:
    event = given(created(), *history).register(user_id=USER, registered_at=registered_at)

    assert event == InvitationAcceptanceRefused(
        invitation_id=INVITATION, user_id=USER, reason=reason, registered_at=registered_at
    )


def test_given_it_was_accepted_by_this_person_when_they_register_again_then_nothing_happens() -> (
    None
):
    accepted = InvitationAccepted(invitation_id=INVITATION, user_id=USER, accepted_at=NOW)
    invitation = given(created(), (accepted, NOW))

    assert invitation.register(user_id=USER, registered_at=NOW + DAYS) is None


def test_given_a_refusal_then_the_invitation_stays_as_it_was_but_its_version_moves() -> None:
    refused = InvitationAcceptanceRefused(invitation_id=INVITATION, user_id=USER,
                                          reason="not_yet_valid", registered_at=NOW)
    invitation = given(created(valid_from=NOW + DAYS), (refused, NOW))

    assert invitation.status == "pending" and invitation.version == 2
    assert invitation.register(user_id=USER, registered_at=NOW + 2 * DAYS) == InvitationAccepted(
        invitation_id=INVITATION, user_id=USER, accepted_at=NOW + 2 * DAYS
    )


# --- resend throttles ---------------------------------------------------------------------


def test_when_resent_after_the_interval_then_it_goes_again() -> None:
    invitation = given(created())

    event = invitation.resend(
        by=INVITER, now=NOW + timedelta(minutes=15), inviter_sends=[], policy=ResendPolicy()
    )

    assert event == InvitationResent(invitation_id=INVITATION, resent_by=INVITER)


def test_when_resent_within_15_minutes_of_the_last_send_then_retry_after_says_when() -> None:
    invitation = given(
        created(), (InvitationResent(invitation_id=INVITATION, resent_by=INVITER), NOW + DAYS)
    )

    with pytest.raises(ResendThrottled) as refused:
        invitation.resend(
            by=INVITER, now=NOW + DAYS + timedelta(minutes=5), inviter_sends=[],
            policy=ResendPolicy(),
        )

    assert refused.value.retry_after_seconds == 600


def test_when_the_inviter_sent_ten_in_the_window_then_the_eleventh_waits_for_the_oldest() -> None:
    later = NOW + DAYS
    sends = [later - timedelta(minutes=14) + timedelta(seconds=n) for n in range(10)]

    with pytest.raises(ResendThrottled, match="10 invitations") as refused:
        given(created()).resend(by=INVITER, now=later, inviter_sends=sends, policy=ResendPolicy())

    assert refused.value.retry_after_seconds == 60


def test_sends_older_than_the_window_do_not_count() -> None:
    later = NOW + DAYS
    sends = [later - timedelta(minutes=16)] * 10 + [later - timedelta(minutes=1)] * 9

    event = given(created()).resend(
        by=INVITER, now=later, inviter_sends=sends, policy=ResendPolicy()
    )

    assert event.resent_by == INVITER


def test_an_invitation_whose_window_has_not_opened_cannot_be_resent() -> None:
    with pytest.raises(NotYetValid):
        given(created(valid_from=NOW + DAYS)).resend(
            by=INVITER, now=NOW + timedelta(hours=1), inviter_sends=[], policy=ResendPolicy()
        )


# --- time -----------------------------------------------------------------------------------


def test_given_valid_until_passed_then_it_expires_and_not_before() -> None:
    invitation = given(created(days=30))

    assert invitation.expire(now=NOW + 30 * DAYS - timedelta(seconds=1)) is None
    assert invitation.expire(now=NOW + 30 * DAYS) == InvitationExpired(
        invitation_id=INVITATION, valid_until=NOW + 30 * DAYS
    )


def test_a_reminder_is_due_n_days_before_expiry_once() -> None:
    invitation = given(created(days=30))
    before = 3 * DAYS

    assert invitation.remind(now=NOW + 26 * DAYS, before_expiry=before) is None
    reminder = invitation.remind(now=NOW + 27 * DAYS, before_expiry=before)
    assert reminder == InvitationReminderDue(
        invitation_id=INVITATION, reminder_number=1, valid_until=NOW + 30 * DAYS
    )
    reminded = given(created(days=30), (reminder, NOW + 27 * DAYS))
    assert reminded.remind(now=NOW + 28 * DAYS, before_expiry=before) is None


def test_no_reminder_once_the_window_closed() -> None:
    assert given(created(days=30)).remind(now=NOW + 30 * DAYS, before_expiry=3 * DAYS) is None


def test_given_a_future_window_when_it_opens_then_the_e_mail_is_due_once() -> None:
    opens = NOW + 2 * DAYS
    invitation = given(created(valid_from=opens))

    assert invitation.open_window(now=opens - timedelta(seconds=1)) is None
    due = invitation.open_window(now=opens)
    assert due == InvitationSendDue(
        invitation_id=INVITATION, valid_from=opens, valid_until=opens + 30 * DAYS
    )
    opened = given(created(valid_from=opens), (due, opens))
    assert opened.window_opened and opened.last_sent_at == opens
    assert opened.open_window(now=opens + DAYS) is None


def test_an_invitation_sent_at_creation_has_no_window_to_open() -> None:
    assert given(created()).open_window(now=NOW + DAYS) is None


def test_showing_the_url_again_leaves_a_trace_even_when_no_longer_pending() -> None:
    invitation = given(
        created(), (InvitationRevoked(invitation_id=INVITATION, revoked_by=INVITER), NOW)
    )

    event = invitation.view_url(by=INVITER, endpoint="GET /v1/invitations/{invitation_id}/url")

    assert event == InvitationUrlViewed(
        invitation_id=INVITATION, viewed_by=INVITER,
        endpoint="GET /v1/invitations/{invitation_id}/url",
    )
    assert given(created(), (InvitationRevoked(invitation_id=INVITATION, revoked_by=INVITER),
                             NOW), (event, NOW)).version == 3


def test_history_must_start_with_the_creation() -> None:
    with pytest.raises(ValueError, match="before InvitationCreated"):
        Invitation.replay([(InvitationResent(invitation_id=INVITATION, resent_by=INVITER), NOW)])
