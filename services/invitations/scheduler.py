"""Time: expiry, the reminder before it, and the e-mail of invitations created ahead of time.

Each pass also deletes the lookup limit's windows that ended.

Each pass claims due rows with ``FOR UPDATE SKIP LOCKED`` and decides on each
in the same transaction, so two replicas never handle one invitation twice: a
row one replica holds is skipped by the other, and once it commits the row no
longer matches (PostgreSQL re-checks the condition on the locked row). The
append's expected version is the last guard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import structlog

from eventkit.postgres_store import PostgresEventStore
from eventkit.rate_limit import ClientWindowLimit
from eventkit.store import Clock, Transaction
from services.invitations.handlers import InvitationHandlers, _connection

log = structlog.get_logger(__name__)

_DUE_EXPIRY = (
    "SELECT invitation_id FROM invitations WHERE status = 'pending' AND valid_until <= $1 "
    "ORDER BY valid_until LIMIT $2 FOR UPDATE SKIP LOCKED"
)
_DUE_WINDOW = (
    "SELECT invitation_id FROM invitations WHERE status = 'pending' AND NOT window_opened "
    "AND valid_from <= $1 AND valid_until > $1 ORDER BY valid_from LIMIT $2 "
    "FOR UPDATE SKIP LOCKED"
)
_DUE_REMINDER = (
    "SELECT invitation_id FROM invitations WHERE status = 'pending' AND window_opened "
    "AND reminded_at IS NULL AND valid_until - $3::interval <= $1 AND valid_until > $1 "
    "ORDER BY valid_until LIMIT $2 FOR UPDATE SKIP LOCKED"
)


@dataclass
class PassReport:
    expired: int = 0
    opened: int = 0
    reminded: int = 0
    # Lookup-limit windows that ended (housekeeping, not counted in ``total``).
    purged_windows: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.opened + self.reminded


Decide = Callable[[Transaction, UUID], Awaitable[bool]]


class InvitationScheduler:
    def __init__(
        self, store: PostgresEventStore, handlers: InvitationHandlers, *, clock: Clock,
        batch: int = 200, lookup_limit: ClientWindowLimit | None = None,
    ) -> None:
        self._store = store
        self._lookup_limit = lookup_limit
        self._handlers = handlers
        self._clock = clock
        self._batch = batch

    async def run_once(self) -> PassReport:
        """One pass over everything due now; returns what it emitted."""
        now = self._clock()
        report = PassReport()
        # Expiry first: an invitation past its window gets no reminder and no first e-mail.
        report.expired = await self._drain(
            _DUE_EXPIRY, (now, self._batch),
            lambda tx, i: self._handlers.expire(tx, i, now=now),
        )
        report.opened = await self._drain(
            _DUE_WINDOW, (now, self._batch),
            lambda tx, i: self._handlers.open_window(tx, i, now=now),
        )
        before = self._handlers.policies.reminder_before_expiry
        report.reminded = await self._drain(
            _DUE_REMINDER, (now, self._batch, before),
            lambda tx, i: self._handlers.remind(tx, i, now=now),
        )
        if self._lookup_limit is not None:
            report.purged_windows = await self._lookup_limit.purge(self._store.pool, now=now)
        return report

    async def _drain(self, query: str, args: tuple[object, ...], decide: Decide) -> int:
        done = 0
        while True:
            this_round = 0
            async with self._store.transaction() as tx:
                due = await _connection(tx).fetch(query, *args)
                for row in due:
                    if await decide(tx, row["invitation_id"]):
                        this_round += 1
            done += this_round
            # A full batch of rows the domain declined would come back forever: stop.
            if len(due) < self._batch or this_round == 0:
                return done

    async def run(self, stopping: asyncio.Event, *, interval: float) -> None:
        while not stopping.is_set():
            try:
                report = await self.run_once()
                if report.total:
                    log.info("scheduler pass", expired=report.expired, opened=report.opened,
                             reminded=report.reminded)
            except Exception as error:
                log.warning("scheduler pass failed; trying again", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)

