"""Schema migrations for a service's own database, applied with yoyo.

eventkit's tables (event store, outbox, consumer inbox, idempotency keys) come
first, then the service's own folder. yoyo keeps the applied set in the
database and takes a lock, so two replicas starting together are safe.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from yoyo import get_backend, read_migrations

EVENTKIT_MIGRATIONS = Path(__file__).parent / "migrations"


def _yoyo_url(database_url: str) -> str:
    # yoyo's psycopg 3 backend is named postgresql+psycopg; asyncpg URLs use postgresql://.
    scheme, _, rest = database_url.partition("://")
    if scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return f"postgresql+psycopg://{rest}"


def apply_migrations_blocking(database_url: str, *directories: Path) -> list[str]:
    """Apply eventkit's migrations and then each directory's; return the ids applied."""
    folders = [str(EVENTKIT_MIGRATIONS), *(str(d) for d in directories if any(d.glob("*.sql")))]
    backend = get_backend(_yoyo_url(database_url))
    migrations = read_migrations(*folders)
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


async def apply_migrations(database_url: str, *directories: Path) -> list[str]:
    """yoyo is synchronous; run it off the event loop."""
    return await asyncio.to_thread(apply_migrations_blocking, database_url, *directories)
