"""Erasure of a deleted account: its data keys and lookup rows go, in the deletion's transaction.

Destroying the person's data key makes every copy of their personal fields
unreadable (crypto-shredding). The farewell mail still needs the address, so it
rides on ``UserDeleted`` sealed under a fresh delivery key only the
notifications service may fetch, until ``notice_ttl`` has passed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from eventkit.personal_data import ERASED
from eventkit.postgres_store import PostgresTransaction
from eventkit.registry import EventData
from schemas.identity import UserDeleted
from services.identity.handlers import UnitOfWork
from services.identity.queries import profile
from services.identity.service_clients import delivery_key


class Erasure:
    def __init__(self, work: UnitOfWork, *, notice_ttl: timedelta) -> None:
        self.work = work
        self._notice_ttl = notice_ttl

    async def erase(
        self, tx: PostgresTransaction, user_id: UUID, events: list[EventData], now: datetime
    ) -> list[EventData]:
        """Destroy the data keys and every lookup row of a deleted account, in its transaction.

        Answers ``events`` with the address put on ``UserDeleted`` for the farewell,
        sealed under a fresh delivery key: the person's own key is gone with this.
        """
        address = (await profile(self.work, tx, user_id))["email"]
        await self.work.data_keys.destroy(tx.connection, user_id)
        for statement in (
            "DELETE FROM credentials WHERE user_id = $1",
            # A reset link mailed before must not set a password on a deleted account.
            "DELETE FROM one_time_tokens WHERE user_id = $1",
            "DELETE FROM scheduled_work WHERE user_id = $1",
        ):
            await tx.connection.execute(statement, user_id)
        await end_sessions(tx, user_id)
        if address == ERASED:
            return events
        notice = await delivery_key(self.work, tx, user_id=user_id, purpose="deletion_notice",
                                    expires_at=now + self._notice_ttl)
        return [event.model_copy(update={"email": notice.seal(address)})
                if isinstance(event, UserDeleted) else event for event in events]


async def end_sessions(tx: PostgresTransaction, user_id: UUID) -> None:
    """Revoke every live session of the person (their refresh tokens stop working)."""
    await tx.connection.execute(
        "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
