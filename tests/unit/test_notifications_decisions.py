"""The table of what to send: given what the service knows, when an event comes, these mails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from schemas.identity import (
    LoginFailed,
    PasswordResetRequested,
    RoleGranted,
    UserDeleted,
    UserLockedOut,
    UserRegistered,
    UserSuspended,
)
from schemas.invitations import InvitationCreated, InvitationResent
from services.notifications.domain import (
    MAILS,
    InvitationFacts,
    Known,
    PersonFacts,
    TemplateName,
    mails_for,
    message_id,
    notification_id,
    retry_delay,
    within_window,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
PERSON = PersonFacts(user_id=uuid4(), email="pd1:sealed-address", locale="uk", name="pd1:name")


def _invitation(**changes: object) -> InvitationFacts:
    base: dict[str, object] = dict(
        invitation_id=uuid4(), invitee_email="pd1:sealed-invitee", locale="es",
        roles=({"role": "community_member", "scope": "community"},),
        valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=29),
        greeting="pd1:sealed-greeting",
    )
    return InvitationFacts(**(base | changes))  # type: ignore[arg-type]


def _created(invitation: InvitationFacts) -> InvitationCreated:
    return InvitationCreated(
        invitation_id=invitation.invitation_id, invitee_email=invitation.invitee_email,
        inviter_id=uuid4(), locale=invitation.locale, valid_from=invitation.valid_from,
        valid_until=invitation.valid_until, code_hash="0" * 64,
    )


def test_given_a_pending_invitation_when_created_then_one_mail_inside_its_window() -> None:
    invitation = _invitation()
    [mail] = mails_for(_created(invitation), Known(
        at=NOW, invitation=invitation, extras={"invitation_code": "pd1:sealed-code"}))
    assert mail.template is TemplateName.INVITATION
    assert mail.recipient == "pd1:sealed-invitee" and mail.locale == "es"
    assert mail.sealed == {"code": "pd1:sealed-code", "greeting": "pd1:sealed-greeting"}
    assert (mail.not_before, mail.not_after) == (invitation.valid_from, invitation.valid_until)
    assert mail.cancelled_because is None


def test_given_an_invitation_whose_window_opens_later_when_created_then_no_mail_yet() -> None:
    invitation = _invitation(valid_from=NOW + timedelta(days=2))
    assert mails_for(_created(invitation), Known(
        at=NOW, invitation=invitation, extras={"invitation_code": "pd1:c"})) == []


def test_given_a_revoked_invitation_when_resent_then_no_mail() -> None:
    invitation = _invitation(status="revoked")
    event = InvitationResent(invitation_id=invitation.invitation_id, resent_by=uuid4())
    assert mails_for(event, Known(at=NOW, invitation=invitation,
                                  extras={"invitation_code": "pd1:c"})) == []


def test_given_no_code_in_the_event_then_the_invitation_mail_is_recorded_as_cancelled() -> None:
    invitation = _invitation()
    [mail] = mails_for(_created(invitation), Known(at=NOW, invitation=invitation))
    assert mail.cancelled_because == "the invitation event carries no code"


def test_given_a_known_person_when_suspended_then_a_notice_with_reason_and_end() -> None:
    until = NOW + timedelta(days=7)
    event = UserSuspended(user_id=PERSON.user_id, reason="Spam", until=until)
    [mail] = mails_for(event, Known(at=NOW, person=PERSON))
    assert mail.template is TemplateName.ACCOUNT_SUSPENDED
    assert mail.params == {"reason": "Spam", "until": until}
    assert mail.sealed == {"name": "pd1:name"} and mail.locale == "uk"


def test_role_and_lockout_notices_name_the_role_and_the_end() -> None:
    granted = RoleGranted(user_id=PERSON.user_id, role="community_facilitator",
                          scope="community", community_id=uuid4())
    [grant] = mails_for(granted, Known(at=NOW, person=PERSON))
    assert grant.params == {"role": {"role": "community_facilitator", "scope": "community"}}
    locked = UserLockedOut(user_id=PERSON.user_id, until=NOW, failed_attempts=5)
    [lock] = mails_for(locked, Known(at=NOW, person=PERSON))
    assert lock.template is TemplateName.ACCOUNT_LOCKED and lock.params == {"until": NOW}


def test_given_an_unknown_person_then_no_notice() -> None:
    event = UserSuspended(user_id=uuid4(), reason="Spam")
    assert mails_for(event, Known(at=NOW)) == []


def test_given_a_registration_without_a_token_then_no_confirmation_mail() -> None:
    # An invitation for the same address confirmed it: identity puts no token on the event.
    registered = UserRegistered(user_id=PERSON.user_id, email="pd1:x", locale="uk")
    assert mails_for(registered, Known(at=NOW, person=PERSON)) == []


def test_given_a_sealed_confirmation_token_then_a_confirmation_to_the_registered_address(
) -> None:
    registered = UserRegistered(user_id=PERSON.user_id, email="pd1:x", locale="uk",
                                confirmation_token="pd1:key:token")
    [confirm] = mails_for(registered, Known(at=NOW, person=PERSON,
                                            extras={"confirmation_token": "pd1:key:token"}))
    assert confirm.template is TemplateName.ADDRESS_CONFIRMATION
    assert confirm.recipient == PERSON.email and confirm.locale == "uk"
    assert confirm.sealed == {"token": "pd1:key:token", "name": "pd1:name"}


def test_given_a_reset_token_then_a_reset_mail_to_the_event_s_address_until_it_expires(
) -> None:
    reset = PasswordResetRequested(user_id=PERSON.user_id, expires_at=NOW)
    assert mails_for(reset, Known(at=NOW, person=PERSON)) == []
    [mail] = mails_for(reset, Known(at=NOW, person=PERSON, extras={
        "reset_token": "pd1:key:token", "email": "pd1:person:address"}))
    assert mail.template is TemplateName.PASSWORD_RESET and mail.not_after == NOW
    assert mail.recipient == "pd1:person:address" and mail.sealed["token"] == "pd1:key:token"


def test_given_a_deletion_with_a_sealed_address_then_a_farewell_to_it_without_the_name(
) -> None:
    deleted = UserDeleted(user_id=PERSON.user_id, reason="asked")
    # Without the address on the event there is nobody to write to: the person's key is gone.
    assert mails_for(deleted, Known(at=NOW, person=PERSON)) == []
    [farewell] = mails_for(deleted, Known(at=NOW, person=PERSON,
                                          extras={"email": "pd1:farewell-key:address"}))
    assert farewell.template is TemplateName.ACCOUNT_DELETED
    assert farewell.recipient == "pd1:farewell-key:address" and farewell.locale == "uk"
    assert farewell.sealed == {}


def test_events_outside_the_table_cause_no_mail() -> None:
    assert LoginFailed not in MAILS
    event = LoginFailed(user_id=PERSON.user_id, failure="wrong_password", consecutive_failures=1)
    assert mails_for(event, Known(at=NOW, person=PERSON)) == []


def test_the_same_event_and_template_always_give_the_same_message_id() -> None:
    event_id = uuid4()
    first = notification_id(event_id, TemplateName.INVITATION)
    assert first == notification_id(event_id, TemplateName.INVITATION)
    assert first != notification_id(event_id, TemplateName.INVITATION_REMINDER)
    assert first != notification_id(uuid4(), TemplateName.INVITATION)
    assert message_id(first, domain="mail.example") == f"<{first}@mail.example>"


def test_backoff_doubles_up_to_its_cap_and_windows_are_half_open() -> None:
    delays = [retry_delay(n, base=timedelta(seconds=30), cap=timedelta(minutes=3))
              for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 180, 180)]
    assert within_window(NOW, NOW, NOW + timedelta(seconds=1))
    assert not within_window(NOW, None, NOW)
    assert not within_window(NOW, NOW + timedelta(seconds=1), None)
