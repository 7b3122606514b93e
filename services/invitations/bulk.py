"""Bulk invitations: an upload becomes a batch of rows, worked off in the background.

The upload commits the batch and its rows in one transaction (with its
Idempotency-Key answer), so the same key never creates a second batch. A
worker claims pending rows with ``FOR UPDATE SKIP LOCKED`` (safe with several
replicas) and runs each through the same handler as a single invitation,
inside a savepoint: a bad or duplicate row is recorded with its reason and
never blocks the good ones. So does a row that fails in a way nobody
foresaw (a poison row): it is recorded as ``invalid`` with the error's type
and the rest goes on. A chunk of rows commits in one transaction with their
outcomes and events, so a crash mid-chunk keeps none of it and the next pass
(in any replica) redoes exactly those rows: no row is created twice. Failures
of the moment (a lost connection, a deadlock) roll the chunk back the same
way instead of marking a row. Each row's input (an e-mail address) is
cleared once it has an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
import structlog
from pydantic import ValidationError

from eventkit.http.problems import field_name
from eventkit.postgres_store import PostgresEventStore
from eventkit.store import Clock, ConcurrencyError, Transaction
from services.invitations.commands import BulkRow
from services.invitations.domain import DuplicatePendingInvitation, InvitationRuleBroken
from services.invitations.handlers import InvitationHandlers, _connection

log = structlog.get_logger(__name__)

CSV_COLUMNS = ("invitee_email", "platform_role", "community_role", "locale", "greeting",
               "valid_until")


class BadUpload(ValueError):
    """The upload as a whole cannot be read (not its rows: those fail one by one)."""


def rows_from_csv(text: str, *, max_rows: int) -> list[dict[str, object]]:
    """The CSV's rows as objects; empty cells are left out so defaults apply."""
    try:
        return _read_csv(text, max_rows=max_rows)
    except csv.Error as error:  # e.g. a field over csv.field_size_limit()
        raise BadUpload(f"the CSV cannot be read: {error}") from None


def _read_csv(text: str, *, max_rows: int) -> list[dict[str, object]]:
    # newline="": line breaks inside quoted fields, and lone CRs, are the csv module's to read.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise BadUpload("the CSV is empty")
    header = [name.strip() for name in reader.fieldnames]
    if "invitee_email" not in header:
        raise BadUpload("the CSV needs an invitee_email column")
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if unknown:
        raise BadUpload(f"unknown CSV columns: {', '.join(unknown)}")
    rows: list[dict[str, object]] = []
    for record in reader:
        if len(rows) >= max_rows:
            raise BadUpload(f"at most {max_rows} rows per upload")
        rows.append({
            key.strip(): value.strip()
            for key, value in record.items()
            if isinstance(key, str) and isinstance(value, str) and value.strip()
        })
    if not rows:
        raise BadUpload("the CSV has no rows")
    return rows


def storable(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The rows, if PostgreSQL can keep them: it stores no NUL character (U+0000) in text."""
    for number, row in enumerate(rows, start=1):
        if _holds_nul(row):
            raise BadUpload(f"rows: row {number} contains a NUL character")
    return rows


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


async def submit_batch(
    tx: Transaction,
    rows: Sequence[Mapping[str, object]],
    *,
    by: UUID,
    permissions: frozenset[str],
    now: datetime,
) -> UUID:
    batch_id = uuid4()
    conn = _connection(tx)
    await conn.execute(
        "INSERT INTO invitation_batches (batch_id, submitted_by, permissions, submitted_at, "
        "total) VALUES ($1, $2, $3, $4, $5)",
        batch_id, by, sorted(permissions), now, len(rows),
    )
    await conn.execute(
        "INSERT INTO invitation_batch_rows (batch_id, row_number, input) "
        "SELECT $1, n, input FROM unnest($2::jsonb[]) WITH ORDINALITY AS r(input, n)",
        batch_id, [json.dumps(dict(row), default=str) for row in rows],
    )
    return batch_id


def _reason(error: ValidationError) -> str:
    return "; ".join(
        f"{field_name(item['loc']) or 'row'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    )


# Failures of the moment, not of the row: the whole chunk rolls back and is tried again.
_PASSING: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    ConnectionError,
    ConcurrencyError,
)


class BulkWorker:
    def __init__(
        self, store: PostgresEventStore, handlers: InvitationHandlers, *, clock: Clock,
        chunk: int = 200,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._clock = clock
        self._chunk = chunk
        self.wake = asyncio.Event()

    async def run_once(self) -> int:
        """Work off one chunk of pending rows; returns how many got an outcome."""
        async with self._store.transaction() as tx:
            conn = _connection(tx)
            claimed = await conn.fetch(
                "SELECT r.batch_id, r.row_number, r.input::text AS input, b.submitted_by, "
                "b.permissions FROM invitation_batch_rows r "
                "JOIN invitation_batches b USING (batch_id) "
                "WHERE r.outcome IS NULL ORDER BY r.batch_id, r.row_number "
                "LIMIT $1 FOR UPDATE OF r SKIP LOCKED",
                self._chunk,
            )
            for row in claimed:
                outcome, invitation_id, reason = await self._one(tx, row)
                await conn.execute(
                    "UPDATE invitation_batch_rows SET outcome = $3, invitation_id = $4, "
                    "reason = $5, input = NULL WHERE batch_id = $1 AND row_number = $2",
                    row["batch_id"], row["row_number"], outcome, invitation_id, reason,
                )
            batches = {row["batch_id"] for row in claimed}
            if batches:
                await conn.execute(
                    "UPDATE invitation_batches b SET completed_at = $2 "
                    "WHERE b.batch_id = ANY($1::uuid[]) AND b.completed_at IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM invitation_batch_rows r "
                    "WHERE r.batch_id = b.batch_id AND r.outcome IS NULL)",
                    list(batches), self._clock(),
                )
        return len(claimed)

    async def _one(self, tx: Transaction, row: Mapping[str, object]) -> tuple[str, UUID | None,
                                                                              str | None]:
        try:
            command = BulkRow.model_validate(json.loads(str(row["input"]))).as_command()
        except ValidationError as error:
            return "invalid", None, _reason(error)
        permissions = row["permissions"]
        assert isinstance(permissions, list)
        by = row["submitted_by"]
        assert isinstance(by, UUID)
        try:
            async with _connection(tx).transaction():  # a savepoint per row
                created = await self._handlers.create(
                    tx, command, inviter_id=by, permissions=frozenset(permissions),
                    batch_id=row["batch_id"],  # type: ignore[arg-type]
                )
        except DuplicatePendingInvitation as duplicate:
            return "duplicate", duplicate.existing_id, str(duplicate)
        except InvitationRuleBroken as refused:
            field = f"{refused.field}: " if refused.field else ""
            return "invalid", None, f"{field}{refused}"
        except _PASSING:
            raise  # nothing of the chunk is kept; the next pass redoes it
        except Exception as error:
            # A poison row is recorded and the batch goes on; its savepoint undid its work.
            # The reason names the error's type only: a message may quote the address.
            kind = type(error).__name__
            log.error("bulk row failed unexpectedly", batch_id=str(row["batch_id"]),
                      row=row["row_number"], error_type=kind)
            return "invalid", None, f"this row could not be created ({kind}); nothing was kept"
        return "created", created.invitation_id, None

    async def run(self, stopping: asyncio.Event, *, idle: float) -> None:
        while not stopping.is_set():
            try:
                if await self.run_once():
                    continue
            except Exception as error:
                log.warning("bulk pass failed; trying again", error=repr(error))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken_or(stopping), timeout=idle)

    async def _woken_or(self, stopping: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
