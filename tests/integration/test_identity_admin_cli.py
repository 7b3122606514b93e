"""`guestlist admin create` makes the first platform manager once, and again only with --force."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from typer.testing import CliRunner

from guestlist.cli import app

pytestmark = pytest.mark.integration


async def test_the_first_platform_manager_is_created_once(database_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    args = ["admin", "create", "--email", "root@example.org", "--password", "a long passphrase"]

    def run(*extra: str) -> tuple[int, str]:
        result = runner.invoke(app, [*args, *extra], env=env)
        return result.exit_code, result.output

    first = await asyncio.to_thread(run)
    again = await asyncio.to_thread(run)
    forced = await asyncio.to_thread(
        lambda: runner.invoke(app, ["admin", "create", "--email", "second@example.org",
                                    "--password", "another passphrase", "--force"], env=env)
    )
    assert first[0] == 0 and "platform manager created" in first[1], first[1]
    assert again[0] == 1 and "exists already" in again[1]
    assert forced.exit_code == 0, forced.output
    connection = await asyncpg.connect(database_url)
    try:
        grants = await connection.fetchval(
            "SELECT count(*) FROM events WHERE type = 'guestlist.identity.RoleGranted.v1' "
            "AND data->>'role' = 'platform_manager' AND (data->>'privilege_escalation')::bool"
        )
        emails = await connection.fetch("SELECT data->>'email' AS email FROM events "
                                        "WHERE type = 'guestlist.identity.UserRegistered.v1'")
    finally:
        await connection.close()
    assert grants == 2
    assert all(row["email"].startswith("pd1:") for row in emails)
