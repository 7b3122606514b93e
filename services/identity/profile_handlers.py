"""The profile a person or staff may edit (name, locale), and the record of a data export."""

from __future__ import annotations

from uuid import UUID, uuid4

from eventkit.postgres_store import PostgresTransaction
from schemas.identity import UserDataExported, UserProfileUpdated
from services.identity.account_status import InvalidTransition, UserStatus
from services.identity.commands import UpdateProfile
from services.identity.handlers import UnitOfWork, Written
from services.identity.queries import profile


class ProfileHandlers:
    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    async def update_profile(
        self, user_id: UUID, command: UpdateProfile, *, by: UUID
    ) -> Written:
        async with self.work.transaction() as tx:
            user = await self.work.existing_user(tx, user_id)
            if user.status is UserStatus.DELETED:
                raise InvalidTransition(UserStatus.DELETED, UserStatus.DELETED)
            current = await profile(self.work, tx, user_id)
            event = UserProfileUpdated(
                user_id=user_id,
                name=command.name if "name" in command.model_fields_set else current["name"],
                locale=command.locale or current["locale"],
            )
            return await self.work.append_to_user(tx, user, [event], actor=by)

    async def exported(self, tx: PostgresTransaction, user_id: UUID) -> Written:
        """Record, in the export's transaction, that the person was handed their data."""
        user = await self.work.load_user(tx, user_id)
        event = UserDataExported(user_id=user_id, export_id=uuid4(), requested_by=user_id)
        return await self.work.append_to_user(tx, user, [event], actor=user_id)
