"""The platform as identity describes it on ``identity.platform``: its name and default locale.

``PlatformSettingsChanged`` carries all settings after each change; the latest
(by the event's time) is kept in ``platform_settings``, so a redelivered or
late older event never overwrites a newer one. Until the first arrives, the
service's ``PLATFORM_NAME`` and ``PLATFORM_DEFAULT_LOCALE`` settings stand in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.identity import PlatformSettingsChanged


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    default_locale: str


async def current_platform(conn: Any, *, fallback: Platform) -> Platform:
    row = await conn.fetchrow("SELECT name, default_locale FROM platform_settings")
    if row is None:
        return fallback
    return Platform(name=row["name"], default_locale=row["default_locale"])


async def remember_platform(conn: Any, event: PlatformSettingsChanged, *, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO platform_settings AS p (name, default_locale, time_zone, changed_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (singleton) DO UPDATE SET name = $1, "
        "default_locale = $2, time_zone = $3, changed_at = $4 WHERE p.changed_at <= $4",
        event.name, event.default_locale, event.time_zone, at,
    )
