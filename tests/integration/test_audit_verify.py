"""Verification split over processes finds what one process finds: an intact chain,
an edit at a span boundary, an edit with its hash recomputed, a missing checkpoint hash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from eventkit.envelope import Envelope
from eventkit.inbox import Delivery
from eventkit.kafka_client import ReceivedMessage
from eventkit.migrations import apply_migrations
from services.audit import checkpoints, log
from services.audit.bootstrap import MIGRATIONS
from services.audit.checkpoints import CheckpointSigner
from services.audit.domain import link_hash
from services.audit.verification import split, verify

pytestmark = pytest.mark.integration
ENTRIES = 3000


def delivery(n: int) -> Delivery:
    # Whole seconds and odd times too: PostgreSQL writes the canonical time text.
    moment = datetime(2026, 1, 2, 3, 4, 5, 0 if n % 2 else 120, tzinfo=UTC)
    envelope = Envelope(
        id=uuid4(), type="guestlist.identity.UserRegistered.v1", subject=f"user-{n % 7}",
        time=moment, actor_id="system", sequence=n, data_json=f'{{"n":{n},"t":"é\\\\n\\""}}',
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" if n % 3 else None,
        extensions={"replayid": "r1", "a": "x"} if n % 5 == 0 else {},
    )
    return Delivery(ReceivedMessage("identity.user", n % 3, n, None, None, ()), envelope)


@pytest.fixture
async def filled(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, CheckpointSigner]]:
    await apply_migrations(database_url, MIGRATIONS)
    signer = CheckpointSigner.from_file(tmp_path / "key.pem")
    db = await asyncpg.connect(database_url)
    for start in range(1, ENTRIES + 1, 1000):
        async with db.transaction():
            appended = await log.append(db, [delivery(n) for n in range(start, start + 1000)],
                                        received_at=datetime(2026, 1, 2, tzinfo=UTC))
            await checkpoints.sign_due(db, signer, appended, every=700, at=datetime.now(UTC))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    yield pool, signer
    await pool.close()
    await db.close()


async def tamper(database_url: str, sql: str, *args: object) -> None:
    db = await asyncpg.connect(database_url)
    try:
        await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await db.execute(sql, *args)
        await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await db.close()


async def both(pool: Any, signer: CheckpointSigner, database_url: str,
               **range_: int) -> tuple[dict[str, Any], dict[str, Any]]:
    serial = await verify(pool, signer.public_key, **range_)
    parallel = await verify(pool, signer.public_key, dsn=database_url, processes=3,
                            parallel_min=1000, **range_)
    return serial.as_json(), parallel.as_json()


def test_a_range_is_split_in_equal_spans_that_cover_it() -> None:
    assert [(s.first, s.last) for s in split(1, 3000, 3, 1000)] == [
        (1, 1000), (1001, 2000), (2001, 3000)]
    assert [(s.first, s.last) for s in split(5, 999, 3, 1000)] == [(5, 999)]
    assert [(s.first, s.last) for s in split(1, 1000, 8, 1000)] == [(1, 500), (501, 1000)]


async def test_split_verification_agrees_with_one_process(
    filled: tuple[Any, CheckpointSigner], database_url: str
) -> None:
    pool, signer = filled
    intact = await both(pool, signer, database_url)
    part = await both(pool, signer, database_url, first=900, last=2900)
    # Entry 2001 opens the third span: its stored prev_hash is read from entry 2000.
    await tamper(database_url, "UPDATE audit_log SET data = '{}' WHERE sequence = 2001")
    edited = await both(pool, signer, database_url)

    assert intact[0] == intact[1]
    assert (intact[1]["ok"], intact[1]["checked"], intact[1]["checkpoints_checked"]) == (
        True, ENTRIES, 4)
    assert part[0] == part[1] and (part[1]["ok"], part[1]["checked"]) == (True, 2001)
    assert edited[0] == edited[1]
    assert (edited[1]["ok"], edited[1]["first_bad_sequence"]) == (False, 2001)


async def test_a_rewritten_span_end_is_caught_at_the_next_span(
    filled: tuple[Any, CheckpointSigner], database_url: str
) -> None:
    pool, signer = filled
    # Entry 1000 closes the first span; its hash is recomputed, so only the link breaks.
    row = await pool.fetchrow(f"SELECT {log.ENTRY_COLUMNS} FROM audit_log WHERE sequence = 1000")
    forged = log.entry_from_row(row)
    forged = type(forged)(**{**{f: getattr(forged, f) for f in forged.__slots__},
                             "ce_actorid": "mallory"})
    await tamper(database_url, "UPDATE audit_log SET ce_actorid = 'mallory', hash = $1 "
                 "WHERE sequence = 1000", link_hash(forged.digest(), bytes(row["prev_hash"])))
    serial, parallel = await both(pool, signer, database_url)
    await tamper(database_url, "DELETE FROM audit_log WHERE sequence = 1500")
    gap = await both(pool, signer, database_url, first=1200)

    assert serial == parallel
    assert (parallel["first_bad_sequence"], parallel["reason"]) == (
        1001, "prev_hash is not the previous entry's hash")
    assert gap[0] == gap[1] and gap[1]["first_bad_sequence"] == 1500


@pytest.mark.parametrize(("column", "value"), [
    ("received_at", "now()"), ("topic", "'identity.users'"), ("kafka_partition", "9"),
    ("kafka_offset", "kafka_offset + 1"), ("ce_specversion", "'1.1'"),
    ("ce_id", "gen_random_uuid()"), ("ce_source", "'/guestlist/other'"),
    ("ce_type", "'guestlist.identity.UserDeleted.v1'"), ("ce_subject", "'user-x'"),
    ("ce_time", "ce_time + interval '1 microsecond'"), ("ce_actorid", "'mallory'"),
    ("ce_sequence", "ce_sequence + 1"), ("ce_traceparent", "NULL"),
    ("ce_extensions", "'{\"replayid\": \"r2\"}'"), ("data", "data || ' '"),
    ("prev_hash", "hash"),
])
async def test_an_edit_of_any_column_is_found_at_its_sequence(
    filled: tuple[Any, CheckpointSigner], database_url: str, column: str, value: str
) -> None:
    pool, signer = filled
    # Entry 1234 has a traceparent and no extensions (see delivery()).
    await tamper(database_url, f"UPDATE audit_log SET {column} = {value} WHERE sequence = 1234")
    serial, parallel = await both(pool, signer, database_url)

    assert serial == parallel
    assert (serial["ok"], serial["first_bad_sequence"], serial["checked"]) == (
        False, 1234, ENTRIES)


async def test_values_holding_the_row_separator_verify_and_an_edit_of_one_is_found(
    database_url: str, tmp_path: Path
) -> None:
    await apply_migrations(database_url, MIGRATIONS)
    signer = CheckpointSigner.from_file(tmp_path / "key.pem")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    # A value may hold U+001F, which joins a packed row's columns: read column by column.
    odd = [Delivery(d.message, replace(d.envelope, subject="user\x1fodd"))
           for d in map(delivery, range(1, 6))]
    try:
        async with pool.acquire() as db, db.transaction():
            await log.append(db, [*odd, *(delivery(n) for n in range(6, 11))],
                             received_at=datetime(2026, 1, 2, tzinfo=UTC))
        intact = await verify(pool, signer.public_key)
        await tamper(database_url, "UPDATE audit_log SET ce_subject = 'user\x1fodd2' "
                     "WHERE sequence = 4")
        edited = await verify(pool, signer.public_key)
    finally:
        await pool.close()

    assert (intact.ok, intact.checked) == (True, 10)
    assert (edited.ok, edited.first_bad_sequence, edited.checked) == (False, 4, 10)

