"""The invitations service's smaller parts: settings, secrets, the lookup limit, CSV uploads."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from eventkit.rate_limit import window_of
from eventkit.settings import ConfigurationError, load_settings
from guestlist.stack.topology import stack_topics
from schemas.access import InvitationsPersonalDataViewed
from services.audit.settings import DEFAULT_TOPIC_PATTERN
from services.invitations.bulk import BadUpload, rows_from_csv, storable
from services.invitations.secrets import ServiceSecrets, is_well_formed_code, new_code
from services.invitations.settings import InvitationsSettings

URL = "postgresql://guestlist@127.0.0.1:5432/guestlist_invitations"


def test_defaults_follow_the_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = InvitationsSettings(database_url=URL)

    assert settings.http_port == 8002
    assert settings.invitation_validity == timedelta(days=30)
    assert settings.reminder_before_expiry == timedelta(days=3)
    assert (settings.resend_interval, settings.inviter_send_limit) == (timedelta(minutes=15), 10)
    assert settings.uses_dev_secret


def test_durations_read_seconds_and_the_base_settings_still_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESEND_INTERVAL", "60")
    monkeypatch.setenv("INVITATION_VALIDITY", "P7D")
    monkeypatch.setenv("IDEMPOTENCY_TTL", "120")

    settings = InvitationsSettings(database_url=URL)

    assert settings.resend_interval == timedelta(minutes=1)
    assert settings.invitation_validity == timedelta(days=7)
    assert settings.idempotency_ttl == timedelta(minutes=2)


def test_a_validity_longer_than_a_year_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("INVITATION_MAX_VALIDITY", str(400 * 86400))

    with pytest.raises(ConfigurationError, match="INVITATION_MAX_VALIDITY"):
        load_settings(InvitationsSettings)


def test_codes_carry_192_random_bits_and_only_their_hash_is_kept() -> None:
    codes = {new_code() for _ in range(1000)}
    secrets = ServiceSecrets.from_settings(InvitationsSettings(database_url=URL))
    code = next(iter(codes))

    assert len(codes) == 1000 and all(is_well_formed_code(c) for c in codes)
    assert not is_well_formed_code("x'--") and not is_well_formed_code(code + "A")
    assert secrets.code_hash(code) == secrets.code_hash(f" {code} ")
    assert code not in secrets.code_hash(code) and len(secrets.code_hash(code)) == 64
    assert secrets.email_hash("Ada@Example.org ") == secrets.email_hash("ada@example.org")
    assert repr(secrets) == "ServiceSecrets(…)"


def test_the_code_hash_key_is_the_one_identity_uses() -> None:
    # identity's DEV_INVITATION_CODE_KEY: both services must hash a code alike.
    assert InvitationsSettings(database_url=URL).invitation_code_key.get_secret_value() == (
        "guestlist-local-development-invitation-codes"
    )


@pytest.mark.parametrize(
    ("now", "start", "retry_after"),
    [
        (datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC), datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
         60),
        (datetime(2026, 11, 26, 12, 0, 59, 500000, tzinfo=UTC),
         datetime(2026, 11, 26, 12, 0, tzinfo=UTC), 1),
        (datetime(2026, 11, 26, 12, 1, 20, tzinfo=UTC),
         datetime(2026, 11, 26, 12, 1, tzinfo=UTC), 40),
    ],
)
def test_lookups_count_in_fixed_windows_and_retry_after_is_the_rest_of_the_window(
    now: datetime, start: datetime, retry_after: int
) -> None:
    assert window_of(now, timedelta(minutes=1)) == (start, retry_after)


def test_the_client_address_is_kept_as_a_keyed_hash() -> None:
    secrets = ServiceSecrets.from_settings(InvitationsSettings(database_url=URL))
    other = ServiceSecrets.from_settings(
        InvitationsSettings(database_url=URL, invitations_secret="another-secret-entirely")
    )

    assert "203.0.113.7" not in secrets.client_hash("203.0.113.7")
    assert secrets.client_hash("203.0.113.7") != secrets.client_hash("203.0.113.8")
    assert secrets.client_hash("203.0.113.7") != other.client_hash("203.0.113.7")


def test_a_csv_upload_becomes_rows_with_empty_cells_left_to_defaults() -> None:
    rows = rows_from_csv(
        "invitee_email,platform_role,locale\r\nada@example.org,,de\r\ngrace@example.org,x,\r\n",
        max_rows=10,
    )

    assert rows == [
        {"invitee_email": "ada@example.org", "locale": "de"},
        {"invitee_email": "grace@example.org", "platform_role": "x"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("email\nada@example.org\n", "invitee_email column"),
        ("invitee_email,shoe_size\nada@example.org,44\n", "unknown CSV columns: shoe_size"),
        ("invitee_email\n", "no rows"),
        ("invitee_email\na@b.c\nd@e.f\ng@h.i\n", "at most 2 rows"),
    ],
)
def test_an_unreadable_csv_is_refused_as_a_whole(text: str, message: str) -> None:
    with pytest.raises(BadUpload, match=message):
        rows_from_csv(text, max_rows=2)


@pytest.mark.parametrize(
    "row",
    [{"invitee_email": "a@b.co", "greeting": "Hi\x00"}, {"invitee_email\x00": "a@b.co"},
     {"invitee_email": "a@b.co", "extra": ["fine", {"deep": "\x00"}]}],
)
def test_a_row_postgresql_cannot_store_refuses_the_upload_naming_the_row(
    row: dict[str, object]
) -> None:
    fine: dict[str, object] = {"invitee_email": "c@d.co", "greeting": "a literal \\u0000 is text"}

    assert storable([fine]) == [fine]
    with pytest.raises(BadUpload, match="row 2 contains a NUL"):
        storable([fine, row])


def test_the_audit_log_reads_invitations_access_by_its_pattern_and_the_stack_creates_it() -> None:
    topic = InvitationsPersonalDataViewed.topic
    assert topic == InvitationsSettings(database_url=URL).access_topic == "invitations.access"
    assert re.match(DEFAULT_TOPIC_PATTERN, topic)
    assert topic in stack_topics()


def test_a_csv_with_old_mac_line_ends_or_quoted_line_breaks_is_read_row_by_row() -> None:
    assert rows_from_csv("invitee_email,greeting\ra@b.co,hi\rc@d.co,\"two\nlines\"\r",
                         max_rows=5) == [
        {"invitee_email": "a@b.co", "greeting": "hi"},
        {"invitee_email": "c@d.co", "greeting": "two\nlines"},
    ]


def test_a_csv_field_beyond_what_the_csv_module_reads_refuses_the_upload() -> None:
    with pytest.raises(BadUpload, match="the CSV cannot be read: field larger"):
        rows_from_csv("invitee_email,greeting\na@b.co," + "x" * 200_000 + "\n", max_rows=5)
