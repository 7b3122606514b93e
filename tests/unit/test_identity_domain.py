"""Identity's rules, given/when/then: given these events, when this decision, then these events
or this error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from eventkit.registry import EventData
from schemas.identity import (
    LoginFailed,
    LoginSucceeded,
    PasswordResetRequested,
    RoleGranted,
    RoleRevoked,
    SessionsRevoked,
    UserDeleted,
    UserEmailConfirmed,
    UserLockedOut,
    UserReactivated,
    UserRegistered,
    UserSuspended,
)
from schemas.roles import RoleAssignment
from services.identity.account_status import (
    TRANSITIONS,
    DomainError,
    InvalidTransition,
    UnknownUser,
    UserStatus,
)
from services.identity.domain import User
from services.identity.policies import LockoutPolicy, ResetMailPolicy
from services.identity.role_rules import Granter, GrantRefused, check_grant

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = UUID("00000000-0000-0000-0000-0000000000aa")
STAFF = UUID("00000000-0000-0000-0000-0000000000bb")
COMMUNITY = UUID("00000000-0000-0000-0000-00000000c001")
OTHER_COMMUNITY = UUID("00000000-0000-0000-0000-00000000c002")


def platform(role: str) -> RoleAssignment:
    return RoleAssignment(role=role, scope="platform")


def community(role: str, community_id: UUID = COMMUNITY) -> RoleAssignment:
    return RoleAssignment(role=role, scope="community", community_id=community_id)


def given(*events: EventData, at: datetime = NOW) -> User:
    return User.from_history(USER, [(event, at) for event in events])


REGISTERED = UserRegistered(user_id=USER, email="ciphertext", locale="en")
CONFIRMED = UserEmailConfirmed(user_id=USER)
SUSPENDED = UserSuspended(user_id=USER, reason="spam", suspended_by=STAFF)
DELETED = UserDeleted(user_id=USER)


def active() -> User:
    return given(REGISTERED, CONFIRMED)


# -- states and transitions ----------------------------------------------------


def test_the_states_are_exactly_the_four_of_the_guide() -> None:
    assert {s.value for s in UserStatus} == {
        "pending_confirmation", "active", "suspended", "deleted",
    }
    assert TRANSITIONS[UserStatus.DELETED] == frozenset()


def test_given_a_registration_then_the_account_is_pending_confirmation() -> None:
    assert given(REGISTERED).status is UserStatus.PENDING_CONFIRMATION


def test_given_a_pending_account_when_confirmed_then_it_is_active() -> None:
    user = given(REGISTERED)
    events = user.confirm_email()
    assert events == [UserEmailConfirmed(user_id=USER)]
    user.apply(events[0], NOW)
    assert user.status is UserStatus.ACTIVE


@pytest.mark.parametrize("history", [(REGISTERED, CONFIRMED), (REGISTERED, CONFIRMED, SUSPENDED)])
def test_given_a_confirmed_account_when_confirmed_again_then_it_is_refused(
    history: tuple[EventData, ...],
) -> None:
    with pytest.raises(InvalidTransition):
        given(*history).confirm_email()


def test_given_no_account_when_anything_is_decided_then_the_user_is_unknown() -> None:
    with pytest.raises(UnknownUser):
        given().suspend(reason="x", until=None, by=STAFF, now=NOW)


def test_given_an_active_account_when_suspended_then_its_sessions_are_revoked_too() -> None:
    until = NOW + timedelta(days=3)
    events = active().suspend(reason="spam", until=until, by=STAFF, now=NOW)
    assert events == [
        UserSuspended(user_id=USER, reason="spam", until=until, suspended_by=STAFF),
        SessionsRevoked(user_id=USER, issued_before=NOW, cause="suspended"),
    ]


def test_given_a_pending_account_when_suspended_then_it_is_an_invalid_transition() -> None:
    with pytest.raises(InvalidTransition, match="pending_confirmation cannot become suspended"):
        given(REGISTERED).suspend(reason="spam", until=None, by=STAFF, now=NOW)


def test_given_an_active_account_when_suspended_until_the_past_then_it_is_refused() -> None:
    with pytest.raises(DomainError, match="future"):
        active().suspend(reason="spam", until=NOW - timedelta(seconds=1), by=STAFF, now=NOW)


def test_given_a_suspended_account_when_reactivated_then_it_is_active() -> None:
    user = given(REGISTERED, CONFIRMED, SUSPENDED)
    events = user.reactivate(by=STAFF)
    assert events == [UserReactivated(user_id=USER, reactivated_by=STAFF)]
    user.apply(events[0], NOW)
    assert user.status is UserStatus.ACTIVE


@pytest.mark.parametrize("history", [(REGISTERED,), (REGISTERED, CONFIRMED)])
def test_given_an_account_not_suspended_when_reactivated_then_it_is_refused(
    history: tuple[EventData, ...],
) -> None:
    with pytest.raises(InvalidTransition):
        given(*history).reactivate(by=STAFF)


def test_given_a_timed_suspension_then_it_runs_out_at_until() -> None:
    until = NOW + timedelta(hours=1)
    user = given(REGISTERED, CONFIRMED, UserSuspended(user_id=USER, reason="x", until=until))
    assert not user.suspension_ran_out(until - timedelta(seconds=1))
    assert user.suspension_ran_out(until)
    assert user.reactivate(by=None) == [UserReactivated(user_id=USER, reactivated_by=None)]


@pytest.mark.parametrize(
    "history", [(REGISTERED,), (REGISTERED, CONFIRMED), (REGISTERED, CONFIRMED, SUSPENDED)]
)
def test_given_any_live_account_when_deleted_then_sessions_end_and_it_is_deleted(
    history: tuple[EventData, ...],
) -> None:
    events = given(*history).delete(now=NOW)
    assert events == [
        SessionsRevoked(user_id=USER, issued_before=NOW, cause="deleted"),
        UserDeleted(user_id=USER),
    ]


def test_given_a_deleted_account_then_nothing_moves_it_any_more() -> None:
    user = given(REGISTERED, CONFIRMED, DELETED)
    with pytest.raises(InvalidTransition):
        user.delete(now=NOW)
    with pytest.raises(InvalidTransition):
        user.reactivate(by=STAFF)
    with pytest.raises(InvalidTransition):
        user.confirm_email()
    with pytest.raises(InvalidTransition):
        user.grant_role(community("community_member"), granter=None)


def test_given_a_deletion_request_then_the_deletion_is_due_after_the_grace() -> None:
    events = active().request_deletion(by=USER, now=NOW, grace=timedelta(days=30))
    user = active()
    user.apply(events[0], NOW)
    assert user.delete_after == NOW + timedelta(days=30)


# -- reset mails ---------------------------------------------------------------

RESET_MAILS = ResetMailPolicy(limit=3, window=timedelta(hours=1))


def reset_mailed(user: User, at: datetime) -> None:
    user.apply(PasswordResetRequested(user_id=USER, expires_at=at + timedelta(hours=1)), at)


def test_given_two_reset_mails_within_the_hour_when_a_third_is_asked_then_it_may_go() -> None:
    user = active()
    reset_mailed(user, NOW)
    reset_mailed(user, NOW + timedelta(minutes=10))
    assert user.may_mail_reset(NOW + timedelta(minutes=20), RESET_MAILS)


def test_given_three_reset_mails_within_the_hour_when_a_fourth_is_asked_then_it_may_not() -> None:
    user = active()
    for minute in (0, 10, 20):
        reset_mailed(user, NOW + timedelta(minutes=minute))
    assert not user.may_mail_reset(NOW + timedelta(minutes=59), RESET_MAILS)
    # An hour after the first, one place is free again.
    assert user.may_mail_reset(NOW + timedelta(hours=1), RESET_MAILS)


def test_a_deleted_or_unknown_account_gets_no_reset_mail() -> None:
    assert not given(REGISTERED, CONFIRMED, DELETED).may_mail_reset(NOW, RESET_MAILS)
    assert not given().may_mail_reset(NOW, RESET_MAILS)
    # An unconfirmed or suspended account may still reset its password.
    assert given(REGISTERED).may_mail_reset(NOW, RESET_MAILS)
    assert given(REGISTERED, CONFIRMED, SUSPENDED).may_mail_reset(NOW, RESET_MAILS)


# -- sign-in and lockout -------------------------------------------------------

POLICY = LockoutPolicy(threshold=5, window=timedelta(minutes=15), duration=timedelta(minutes=15))


def failed(user: User, at: datetime) -> list[EventData]:
    events = user.sign_in_failed(now=at, policy=POLICY)
    for event in events:
        user.apply(event, at)
    return events


def test_given_four_failures_when_a_fifth_comes_within_the_window_then_it_locks() -> None:
    user = active()
    for minute in range(4):
        events = failed(user, NOW + timedelta(minutes=minute))
        assert not any(isinstance(e, UserLockedOut) for e in events)
    at = NOW + timedelta(minutes=10)
    events = failed(user, at)
    assert events[0] == LoginFailed(user_id=USER, failure="wrong_password", consecutive_failures=5)
    assert events[1] == UserLockedOut(
        user_id=USER, until=at + timedelta(minutes=15), failed_attempts=5
    )
    assert user.is_locked(at + timedelta(minutes=14, seconds=59))
    assert user.sign_in_refusal(at + timedelta(minutes=1)) == "account_locked"
    assert not user.is_locked(at + timedelta(minutes=15))
    assert user.sign_in_refusal(at + timedelta(minutes=15)) is None


def test_given_failures_older_than_the_window_then_they_do_not_count() -> None:
    user = active()
    for minute in (0, 1, 2, 10):
        failed(user, NOW + timedelta(minutes=minute))
    # At minute 20 only the failure of minute 10 is within 15 minutes.
    events = failed(user, NOW + timedelta(minutes=20))
    assert events == [LoginFailed(user_id=USER, failure="wrong_password", consecutive_failures=2)]


def test_given_failures_when_a_sign_in_succeeds_then_the_count_starts_again() -> None:
    user = active()
    for minute in range(4):
        failed(user, NOW + timedelta(minutes=minute))
    user.apply(LoginSucceeded(user_id=USER, session_id=uuid4(), expires_at=NOW), NOW)
    assert failed(user, NOW + timedelta(minutes=5))[0] == LoginFailed(
        user_id=USER, failure="wrong_password", consecutive_failures=1
    )


def test_the_policy_comes_from_settings() -> None:
    strict = LockoutPolicy(threshold=2, window=timedelta(minutes=1), duration=timedelta(hours=1))
    user = active()
    user.apply(user.sign_in_failed(now=NOW, policy=strict)[0], NOW)
    events = user.sign_in_failed(now=NOW, policy=strict)
    assert events[-1] == UserLockedOut(
        user_id=USER, until=NOW + timedelta(hours=1), failed_attempts=2
    )


@pytest.mark.parametrize(
    ("history", "refusal"),
    [
        ((REGISTERED,), "email_unconfirmed"),
        ((REGISTERED, CONFIRMED, SUSPENDED), "account_suspended"),
        ((REGISTERED, CONFIRMED, DELETED), "account_deleted"),
        ((REGISTERED, CONFIRMED), None),
    ],
)
def test_given_an_account_state_then_a_correct_password_signs_in_only_when_active(
    history: tuple[EventData, ...], refusal: str | None
) -> None:
    user = given(*history)
    assert user.sign_in_refusal(NOW) == refusal
    if refusal is not None:
        with pytest.raises(DomainError):
            user.signed_in(session_id=uuid4(), expires_at=NOW, now=NOW)


# -- roles and grants ----------------------------------------------------------

MANAGER = Granter(STAFF, frozenset({platform("platform_manager")}))
SUPPORT = Granter(STAFF, frozenset({platform("platform_tech_support")}))
ORGANIZER = Granter(STAFF, frozenset({community("community_organizer")}))


def test_given_a_manager_when_granting_a_platform_role_then_the_event_flags_escalation() -> None:
    events = active().grant_role(platform("platform_compliance_officer"), granter=MANAGER)
    assert events == [
        RoleGranted(
            user_id=USER, role="platform_compliance_officer", scope="platform",
            granted_by=STAFF, privilege_escalation=True,
        )
    ]


def test_given_a_manager_when_granting_a_community_role_then_it_is_no_escalation() -> None:
    [event] = active().grant_role(community("community_facilitator"), granter=MANAGER)
    assert isinstance(event, RoleGranted)
    assert not event.privilege_escalation


def test_only_a_platform_manager_makes_a_platform_manager() -> None:
    # Even someone holding every permission of the role (a forged table row aside) cannot.
    almighty = Granter(STAFF, frozenset({
        platform("platform_tech_support"), platform("platform_compliance_officer"),
        platform("platform_infrastructure_architect"),
    }))
    with pytest.raises(GrantRefused):
        check_grant(almighty, platform("platform_manager"))
    check_grant(MANAGER, platform("platform_manager"))


def test_without_manage_platform_roles_nobody_grants_a_platform_role() -> None:
    with pytest.raises(GrantRefused, match="manage_platform_roles"):
        active().grant_role(platform("platform_analytics_viewer"), granter=SUPPORT)


def test_nobody_grants_a_permission_they_do_not_hold() -> None:
    # An organizer manages community roles but does not hold create_community_content.
    with pytest.raises(GrantRefused, match="create_community_content"):
        check_grant(ORGANIZER, community("community_contributor"))
    check_grant(ORGANIZER, community("community_facilitator"))


def test_community_authority_counts_only_in_its_own_community() -> None:
    with pytest.raises(GrantRefused, match="manage_community_roles"):
        check_grant(ORGANIZER, community("community_facilitator", OTHER_COMMUNITY))


def test_given_a_role_already_held_when_granted_again_then_nothing_happens() -> None:
    user = active()
    user.apply(RoleGranted(user_id=USER, role="community_member", scope="community",
                           community_id=COMMUNITY), NOW)
    assert user.grant_role(community("community_member"), granter=MANAGER) == []


def test_given_a_role_when_revoked_then_sessions_are_revoked_with_it() -> None:
    user = active()
    user.apply(RoleGranted(user_id=USER, role="platform_developer", scope="platform"), NOW)
    assert "view_platform_logs" in user.permissions
    events = user.revoke_role(platform("platform_developer"), revoker=MANAGER, now=NOW)
    assert events == [
        RoleRevoked(user_id=USER, role="platform_developer", scope="platform", revoked_by=STAFF),
        SessionsRevoked(user_id=USER, issued_before=NOW, cause="role_revoked"),
    ]
    for event in events:
        user.apply(event, NOW)
    assert user.permissions == frozenset()


def test_a_role_not_held_cannot_be_revoked() -> None:
    with pytest.raises(DomainError, match="does not hold"):
        active().revoke_role(platform("platform_developer"), revoker=MANAGER, now=NOW)


def test_revoking_needs_the_authority_granting_would() -> None:
    user = active()
    user.apply(RoleGranted(user_id=USER, role="platform_manager", scope="platform"), NOW)
    with pytest.raises(GrantRefused):
        user.revoke_role(platform("platform_manager"), revoker=SUPPORT, now=NOW)
