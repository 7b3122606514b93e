"""`guestlist admin create`: the first platform manager, straight into identity's database.

It goes through identity's own handler (argon2id hash, sealed events through
the outbox), so the account is exactly what registration makes, plus the
``platform_manager`` role. It refuses when a platform manager exists, unless
``--force``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from eventkit.database import ServiceDatabase
from eventkit.http.auth import RevokedSessions
from eventkit.postgres_store import PostgresEventStore
from eventkit.settings import ConfigurationError, load_settings
from eventkit.store import utc_now
from schemas.catalog import build_registry
from services.identity.account_handlers import AccountHandlers
from services.identity.account_status import DomainError
from services.identity.bootstrap import MIGRATIONS
from services.identity.commands import password_problem
from services.identity.derived_keys import DerivedKeys
from services.identity.handlers import UnitOfWork
from services.identity.personal_data_keys import PersonalDataKeys
from services.identity.settings import IdentitySettings

admin_app = typer.Typer(help="Administer accounts (identity's database).", no_args_is_help=True)
console = Console()


async def _create(settings: IdentitySettings, email: str, password: str, force: bool) -> str:
    database = ServiceDatabase(settings.database_url, application_name="guestlist-admin",
                               migrations=[MIGRATIONS], max_size=2)
    async with database.lifespan():
        store = PostgresEventStore(database.pool)
        keys = DerivedKeys.from_settings(settings)
        work = UnitOfWork(store=lambda: store, registry=build_registry(), keys=keys,
                          data_keys=PersonalDataKeys(keys.data_key_wrapping),
                          revoked=RevokedSessions(), clock=utc_now)
        accounts = AccountHandlers(
            work, confirmation_ttl=settings.confirmation_token_ttl,
            deletion_grace=settings.deletion_grace,
            deletion_notice_ttl=settings.deletion_notice_ttl,
        )
        user_id = await accounts.create_admin(email=email, password=password, force=force)
    return str(user_id)


@admin_app.command()
def create(
    email: Annotated[str, typer.Option("--email", help="The platform manager's e-mail.")],
    password: Annotated[
        str, typer.Option("--password", prompt=True, hide_input=True, help="Their password.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Create one even if a platform manager exists.")
    ] = False,
) -> None:
    """Create a platform manager (identity's DATABASE_URL and IDENTITY_SECRET from the env)."""
    try:
        settings = load_settings(IdentitySettings)
    except ConfigurationError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    problem = password_problem(password, email, settings.password_min_length)
    if problem is not None:
        console.print(f"[red]--password {problem}[/]")
        raise typer.Exit(2)
    try:
        user_id = asyncio.run(_create(settings, email, password, force))
    except DomainError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    console.print(f"platform manager created: {user_id}")
