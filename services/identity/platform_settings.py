"""The platform's settings: one stream (the platform id); the latest change is in force."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventkit.postgres_store import PostgresTransaction
from schemas.identity import PlatformSettingsChanged
from services.identity.handlers import PLATFORM_ID, UnitOfWork, Written

# What the platform runs with until a platform manager changes it.
DEFAULT_SETTINGS = PlatformSettingsChanged(
    platform_id=PLATFORM_ID, name="Guestlist", requires_invitation=True, time_zone="UTC",
    default_locale="en", dormant_after_days=365,
)


class PlatformSettingsHandlers:
    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    async def current(self, tx: PostgresTransaction) -> tuple[PlatformSettingsChanged, int]:
        """The settings in force and the stream's version."""
        history = await self.work.history(tx, str(PLATFORM_ID))
        current = DEFAULT_SETTINGS
        for event, _ in history:
            if isinstance(event, PlatformSettingsChanged):
                current = event
        return current, len(history)

    async def change(
        self, tx: PostgresTransaction, values: dict[str, Any], *, by: UUID
    ) -> tuple[PlatformSettingsChanged, Written]:
        _, version = await self.current(tx)
        event = PlatformSettingsChanged(platform_id=PLATFORM_ID, changed_by=by, **values)
        written = await self.work.append(tx, PLATFORM_ID, version, [event], actor=by, seal=False)
        return event, written
