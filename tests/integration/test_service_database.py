"""The service pool releases connections without asyncpg's reset query, and stays safe."""

from __future__ import annotations

from pydantic import SecretStr

from eventkit.database import ServiceDatabase


async def test_work_left_uncommitted_on_a_released_connection_is_rolled_back(
    database_url: str,
) -> None:
    database = ServiceDatabase(SecretStr(database_url), application_name="t", max_size=1)
    async with database.lifespan():
        await database.pool.execute("CREATE TABLE things (n int)")
        async with database.pool.acquire() as connection:
            await connection.execute("BEGIN")  # an unmanaged transaction, never ended
            await connection.execute("INSERT INTO things VALUES (1)")
        async with database.pool.acquire() as connection:  # the same one: max_size=1
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT count(*) FROM things") == 0
