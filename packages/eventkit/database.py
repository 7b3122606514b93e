"""The service's own PostgreSQL database: migrated, then pooled, for the app's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import SecretStr

from eventkit.http.readiness import DatabaseCheck
from eventkit.migrations import apply_migrations

# What code running inside a transaction is handed: a plain connection or a pooled one.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def _keep_session(_connection: asyncpg.Connection[Any]) -> None:
    """Release a pooled connection without asyncpg's reset query.

    asyncpg still rolls back a transaction left open and drops listeners; what
    it would add is ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL`` sent to the server on every release, a second round trip for every
    one-query ``pool.fetch*`` (measured: 18,000 against 25,000 ``SELECT 1``/s
    with 8 workers). Our code keeps no session state on pooled connections:
    cursors live in transactions, LISTEN and long-held locks use connections
    of their own, and the one session lock taken on a pooled connection (audit
    replay) is released or its session closed before the connection returns.
    """


class ServiceDatabase:
    """Opened by the lifespan; everything that needs the pool asks it for ``pool``."""

    def __init__(
        self,
        url: SecretStr,
        *,
        application_name: str,
        migrations: Sequence[Path] = (),
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        self._url = url
        self._application_name = application_name
        self._migrations = tuple(migrations)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[Any] | None = None

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise RuntimeError("the database is not open (outside the app's lifespan)")
        return self._pool

    async def open(self) -> None:
        dsn = self._url.get_secret_value()
        # Schema first: a replica must not serve requests against an old schema.
        await apply_migrations(dsn, *self._migrations)
        self._pool = await asyncpg.create_pool(
            dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            # Names the service in pg_stat_activity when an operator looks at locks.
            server_settings={"application_name": self._application_name},
            reset=_keep_session,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        """Open for the app's lifetime; fits ``create_service_app(lifespan=...)``."""
        await self.open()
        try:
            yield
        finally:
            await self.close()

    def readiness_check(self) -> DatabaseCheck:
        return DatabaseCheck(lambda: self.pool)
