"""The audit log's rules, given/when/then: canonical form, chaining, verification, checkpoints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from eventkit.envelope import format_time
from services.audit.domain import (
    GENESIS_HASH,
    UNIT_SEPARATOR,
    CanonicalFormError,
    ChainCheck,
    LogEntry,
    canonical_time,
    chain,
    checkpoint_due,
    checkpoint_statement,
    link_hash,
)

T0 = datetime(2026, 11, 26, 14, 17, 48, 123456, tzinfo=UTC)


def entry(sequence: int = 1, **changes: object) -> LogEntry:
    base = LogEntry(
        sequence=sequence, received_at=T0, topic="identity.user", partition=0, offset=sequence,
        ce_id=UUID(int=sequence), ce_source="/guestlist/identity",
        ce_type="guestlist.identity.UserRegistered.v1", ce_subject="user-1", ce_time=T0,
        ce_actorid="system", ce_sequence=1, data='{"email":"ciphertext"}',
    )
    return replace(base, **changes)  # type: ignore[arg-type]


text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))


@given(
    subject=text, actor=text, data=text, traceparent=st.none() | text,
    extensions=st.dictionaries(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), text),
    offset=st.integers(0, 2**53 - 1),
    moment=st.datetimes(timezones=st.just(UTC)),
)
def test_the_fast_canonical_form_is_rfc_8785(
    subject: str, actor: str, data: str, traceparent: str | None,
    extensions: dict[str, str], offset: int, moment: datetime,
) -> None:
    given_entry = entry(ce_subject=subject, ce_actorid=actor, data=data, offset=offset,
                        ce_traceparent=traceparent, ce_extensions=extensions, ce_time=moment)
    assert given_entry.canonical() == rfc8785.dumps(given_entry.canonical_object())


def test_the_link_hash_is_sha256_of_the_canonical_link() -> None:
    digest, prev = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    expected = rfc8785.dumps({"prev_hash": prev.hex(), "entry_sha256": digest.hex()})
    assert link_hash(digest, prev) == hashlib.sha256(expected).digest()


def test_an_integer_json_cannot_carry_is_refused() -> None:
    with pytest.raises(CanonicalFormError):
        entry(offset=2**53).canonical()


def test_given_entries_when_chained_then_each_points_at_the_previous_hash() -> None:
    chained = chain([entry(1), entry(2), entry(3)], prev_hash=GENESIS_HASH)
    assert chained[0].prev_hash == GENESIS_HASH
    assert [c.prev_hash for c in chained[1:]] == [c.hash for c in chained[:-1]]
    assert len({c.hash for c in chained}) == 3


def check_of(entries: list[tuple[LogEntry, bytes, bytes]]) -> ChainCheck:
    check = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1)
    for stored, prev, hashed in entries:
        check.feed(stored, prev, hashed)
    return check


def stored(n: int) -> list[tuple[LogEntry, bytes, bytes]]:
    return [(c.entry, c.prev_hash, c.hash)
            for c in chain([entry(i) for i in range(1, n + 1)], prev_hash=GENESIS_HASH)]


def test_given_an_intact_chain_then_it_verifies_and_names_its_head() -> None:
    rows = stored(5)
    check = check_of(rows)
    assert (check.ok, check.checked, check.head_sequence, check.head_hash) == (
        True, 5, 5, rows[-1][2])


def test_given_an_edited_entry_then_its_sequence_is_the_first_bad() -> None:
    rows = stored(5)
    rows[2] = (replace(rows[2][0], data='{"email":"forged"}'), rows[2][1], rows[2][2])
    check = check_of(rows)
    assert (check.ok, check.first_bad, check.checked) == (False, 3, 5)
    assert check.reason == "hash does not match the entry's content"


def test_given_an_edited_entry_with_a_recomputed_hash_then_the_next_entry_is_bad() -> None:
    rows = stored(5)
    forged = replace(rows[2][0], data='{"email":"forged"}')
    rows[2] = (forged, rows[2][1], link_hash(forged.digest(), rows[2][1]))
    assert check_of(rows).first_bad == 4


def test_given_a_missing_entry_then_the_gap_is_reported() -> None:
    rows = stored(5)
    del rows[1]
    check = check_of(rows)
    assert (check.first_bad, check.reason) == (2, "sequence 2 is missing")


def test_a_checkpoint_statement_is_the_canonical_json_of_what_it_asserts() -> None:
    statement = checkpoint_statement(sequence=7, head_hash=bytes(range(32)), signed_at=T0,
                                     key_id="k1")
    assert statement == rfc8785.dumps({
        "log": "guestlist.audit", "sequence": 7, "head_hash": bytes(range(32)).hex(),
        "signed_at": "2026-11-26T14:17:48.123456Z", "key_id": "k1",
    })


@pytest.mark.parametrize(("head", "last", "every", "due"), [
    (999, 0, 1000, []), (1000, 0, 1000, [1000]), (2500, 900, 1000, [1000, 2000]),
    (2000, 2000, 1000, []), (3, 0, 1, [1, 2, 3]),
])
def test_checkpoints_fall_due_on_multiples_of_n(head: int, last: int, every: int,
                                                due: list[int]) -> None:
    assert checkpoint_due(head=head, last_signed=last, every=every) == due




@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)))
def test_the_canonical_time_is_the_wire_time(moment: datetime) -> None:
    assert canonical_time(moment) == format_time(moment)


def packed_row(stored_entry: LogEntry, prev_hash: bytes, hash_: bytes) -> tuple[str]:
    """The entry as services/audit/recompute.py's PACKED_ENTRY brings it from PostgreSQL."""
    e = stored_entry
    # jsonb's text form: its own key order and ", " / ": " separators.
    extensions = json.dumps(dict(sorted(e.ce_extensions.items(), reverse=True)),
                            ensure_ascii=False)
    traceparent = "" if e.ce_traceparent is None else "v" + e.ce_traceparent
    return (UNIT_SEPARATOR.join(str(value) for value in (
        e.sequence, canonical_time(e.received_at), e.topic, e.partition, e.offset,
        e.ce_specversion, e.ce_id, e.ce_source, e.ce_type, e.ce_subject,
        canonical_time(e.ce_time), e.ce_actorid, e.ce_sequence, traceparent, extensions, e.data,
        prev_hash.hex(), hash_.hex())),)


def edited(row: tuple[str], field: int, value: str) -> tuple[str]:
    fields = row[0].split(UNIT_SEPARATOR)
    fields[field] = value
    return (UNIT_SEPARATOR.join(fields),)


plain_text = st.text(alphabet=st.characters(exclude_categories=["Cs"],
                                            exclude_characters=UNIT_SEPARATOR))


@given(
    subject=plain_text, actor=plain_text, data=plain_text, traceparent=st.none() | plain_text,
    extensions=st.dictionaries(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), text),
    offset=st.integers(0, 2**53 - 1), ce_sequence=st.integers(0, 2**53 - 1),
    moment=st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)),
)
def test_rows_are_checked_against_the_rfc_8785_hash(
    subject: str, actor: str, data: str, traceparent: str | None,
    extensions: dict[str, str], offset: int, ce_sequence: int, moment: datetime,
) -> None:
    given_entries = [entry(n, ce_subject=subject, ce_actorid=actor, data=data, offset=offset,
                           ce_traceparent=traceparent, ce_extensions=extensions, ce_time=moment,
                           ce_sequence=ce_sequence) for n in (1, 2)]
    prev, rows = GENESIS_HASH, []
    for stored_entry in given_entries:
        # The reference: the rfc8785 package, not the service's own writer.
        digest = hashlib.sha256(rfc8785.dumps(stored_entry.canonical_object())).digest()
        hashed = hashlib.sha256(rfc8785.dumps(
            {"entry_sha256": digest.hex(), "prev_hash": prev.hex()})).digest()
        rows.append(packed_row(stored_entry, prev, hashed))
        prev = hashed
    intact = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1)
    consumed = intact.feed_packed(rows)
    forged = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1)
    forged.feed_packed([rows[0], edited(rows[1], 15, data + " ")])

    assert (consumed, intact.ok, intact.checked, intact.head_sequence, intact.head_hash) == (
        2, True, 2, 2, prev)
    assert (forged.first_bad, forged.reason) == (2, "hash does not match the entry's content")


def rows_of(n: int) -> list[tuple[str]]:
    return [packed_row(*stored_entry) for stored_entry in stored(n)]


# Every column of the entry, by its place in a packed row, with another value.
EDITS = [(1, "2026-11-26T14:17:48.123457Z"), (2, "identity.users"), (3, "1"), (4, "99"),
         (5, "1.1"), (6, str(UUID(int=99))), (7, "/guestlist/other"),
         (8, "guestlist.identity.UserDeleted.v1"), (9, "user-2"),
         (10, "2026-11-26T14:17:49.123456Z"), (11, "mallory"), (12, "2"),
         (13, "v00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
         (14, '{"replayid": "r"}'), (15, '{"email":"forged"}')]


@pytest.mark.parametrize(("field", "value"), EDITS)
def test_an_edit_of_any_column_is_found_at_its_sequence(field: int, value: str) -> None:
    rows = rows_of(5)
    rows[2] = edited(rows[2], field, value)
    check = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1)
    check.feed_packed(rows)
    assert (check.first_bad, check.reason, check.checked) == (
        3, "hash does not match the entry's content", 5)


def test_given_rows_then_the_same_faults_are_found_as_entry_by_entry() -> None:
    gap = rows_of(5)
    del gap[1]
    relinked = rows_of(5)
    relinked[3] = edited(relinked[3], 16, bytes(32).hex())
    huge = rows_of(3)
    huge[1] = edited(huge[1], 4, str(2**53))
    checks = []
    for rows in (gap, relinked, huge):
        check = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1, wanted={3})
        check.feed_packed(rows[:2])
        check.feed_packed(rows[2:])  # chunk by chunk, as a cursor gives them
        checks.append(check)

    assert [(c.first_bad, c.reason) for c in checks] == [
        (2, "sequence 2 is missing"), (4, "prev_hash is not the previous entry's hash"),
        (2, "the entry has no canonical form")]
    assert checks[0].checked == 4
    assert checks[1].found == {3: bytes.fromhex(rows_of(5)[2][0].split(UNIT_SEPARATOR)[17])}


def test_a_row_whose_value_holds_the_separator_is_left_to_the_caller() -> None:
    rows = rows_of(4)
    odd = stored(4)[2]
    rows[2] = packed_row(replace(odd[0], ce_subject="a\x1fb"), odd[1], odd[2])
    check = ChainCheck(prev_hash=GENESIS_HASH, next_sequence=1)

    assert check.feed_packed(rows) == 2
    assert (check.checked, check.next_sequence, check.prev_hash) == (2, 3, stored(4)[1][2])
    check.feed(*odd)
    assert check.feed_packed(rows[3:]) == 1
    assert (check.ok, check.checked, check.head_sequence) == (True, 4, 4)


def test_given_an_entry_without_canonical_form_then_feed_reports_it() -> None:
    rows = stored(3)
    rows[1] = (replace(rows[1][0], offset=2**53), rows[1][1], rows[1][2])
    check = check_of(rows)
    assert (check.first_bad, check.reason, check.checked) == (
        2, "the entry has no canonical form", 3)
