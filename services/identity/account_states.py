"""Account states: staff suspend, reactivate and delete; a person asks for their own deletion;
the scheduler reactivates when a suspension runs out and deletes when the grace has passed.

Suspension and deletion end the person's sessions (``SessionsRevoked``); a
deletion erases the account's personal data in the same transaction (``erasure``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from eventkit.postgres_store import PostgresTransaction
from services.identity.account_status import DomainError, UserStatus
from services.identity.commands import DeleteUser, SuspendUser
from services.identity.erasure import Erasure, end_sessions
from services.identity.handlers import UnitOfWork, Written, schedule


class AccountStates:
    def __init__(self, work: UnitOfWork, *, erasure: Erasure, deletion_grace: timedelta) -> None:
        self.work = work
        self._erasure = erasure
        self._deletion_grace = deletion_grace

    async def suspend(self, user_id: UUID, command: SuspendUser, *, by: UUID) -> Written:
        now = self.work.clock()
        async with self.work.transaction() as tx:
            user = await self.work.existing_user(tx, user_id)
            events = user.suspend(reason=command.reason, until=command.until, by=by, now=now)
            written = await self.work.append_to_user(tx, user, events, actor=by)
            await schedule(tx, user_id, "reactivate", command.until)
            await end_sessions(tx, user_id)
        self.work.apply_revocations(events, now)
        return written

    async def reactivate(self, user_id: UUID, *, by: UUID | None) -> Written:
        async with self.work.transaction() as tx:
            user = await self.work.existing_user(tx, user_id)
            written = await self.work.append_to_user(tx, user, user.reactivate(by=by), actor=by)
            await schedule(tx, user_id, "reactivate", None)
        return written

    async def delete(
        self, user_id: UUID, command: DeleteUser | None, *, by: UUID | None
    ) -> Written:
        """Delete the account and erase its personal data by destroying its key."""
        now = self.work.clock()
        async with self.work.transaction() as tx:
            user = await self.work.existing_user(tx, user_id)
            events = user.delete(now=now, reason=command.reason if command else None)
            events = await self._erasure.erase(tx, user_id, events, now)
            written = await self.work.append_to_user(tx, user, events, actor=by)
        self.work.apply_revocations(events, now)
        return written

    async def request_deletion(self, user_id: UUID) -> tuple[Written, datetime]:
        now = self.work.clock()
        async with self.work.transaction() as tx:
            user = await self.work.existing_user(tx, user_id)
            events = user.request_deletion(by=user_id, now=now, grace=self._deletion_grace)
            written = await self.work.append_to_user(tx, user, events, actor=user_id)
            assert user.delete_after is not None
            await schedule(tx, user_id, "delete", user.delete_after)
        return written, user.delete_after

    # -- scheduled work (two replicas: SKIP LOCKED hands each row to one) ---------

    async def run_due_work(self) -> int:
        """Due reactivations and deletions; then delivery keys past their time are deleted."""
        done = 0
        while True:
            async with self.work.transaction() as tx:
                row = await tx.connection.fetchrow(
                    "SELECT user_id, kind FROM scheduled_work WHERE due_at <= $1 "
                    "ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED", self.work.clock(),
                )
                if row is None:
                    await self.work.data_keys.delete_expired(tx.connection, self.work.clock())
                    return done
                await tx.connection.execute(
                    "DELETE FROM scheduled_work WHERE user_id = $1 AND kind = $2",
                    row["user_id"], row["kind"],
                )
                await self._run(tx, row["user_id"], row["kind"])
            done += 1

    async def _run(self, tx: PostgresTransaction, user_id: UUID, kind: str) -> None:
        user = await self.work.load_user(tx, user_id)
        now = self.work.clock()
        try:
            if kind == "reactivate" and user.suspension_ran_out(now):
                await self.work.append_to_user(tx, user, user.reactivate(by=None), actor=None)
            elif kind == "delete" and user.status is not UserStatus.DELETED:
                events = user.delete(now=now, reason="deletion requested by the person")
                events = await self._erasure.erase(tx, user_id, events, now)
                await self.work.append_to_user(tx, user, events, actor=None)
                self.work.apply_revocations(events, now)
        except DomainError:
            pass  # The account moved on (reactivated by hand, deleted): nothing left to do.
