"""`guestlist projections rebuild NAME`: the next version of a read model, then the switch;
`guestlist projections failed NAME` and `retry NAME ID`: the events a read model set aside.

Runs the build here, against the projections database (DATABASE_URL) and
Kafka (KAFKA_BOOTSTRAP), while the service keeps serving the current version;
the service follows the switch by itself. Topic names come from the same
variables as the service's (USER_TOPIC, ...). With ``--from-audit`` the
history comes from an audit replay (AUDIT_URL, a GUESTLIST_TOKEN with
export_audit_log, the audit consumer group AUDIT_CONSUMER_GROUP).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventkit.settings import ConfigurationError, load_settings
from schemas.catalog import build_registry
from services.projections import failed_events
from services.projections.audit_replay import AuditReplays
from services.projections.bootstrap import read_models, topics_of
from services.projections.readmodels import ReadModel, active_version
from services.projections.rebuild import RebuildError, rebuild, rebuild_from_audit
from services.projections.settings import ProjectionsSettings

projections_app = typer.Typer(help="Read models of the projections service.",
                              no_args_is_help=True)
console = Console(stderr=True)


@projections_app.command("rebuild")
def rebuild_command(
    name: Annotated[str, typer.Argument(help="directory, invitations or security.")],
    database_url: Annotated[str, typer.Option(
        "--database-url", envvar="DATABASE_URL", help="The projections service's database.")],
    kafka_bootstrap: Annotated[str, typer.Option(
        "--kafka-bootstrap", envvar="KAFKA_BOOTSTRAP")] = "127.0.0.1:9092",
    from_audit: Annotated[bool, typer.Option(
        "--from-audit", help="Replay the history from the audit log instead of the topics.")
    ] = False,
    audit_url: Annotated[str, typer.Option(
        "--audit-url", envvar="AUDIT_URL")] = "http://127.0.0.1:8004",
    token: Annotated[str, typer.Option(
        "--token", envvar="GUESTLIST_TOKEN", help="With --from-audit: a token with "
        "export_audit_log.")] = "",
    audit_group: Annotated[str, typer.Option(
        "--audit-group", envvar="AUDIT_CONSUMER_GROUP",
        help="The audit service's consumer group.")] = "audit",
) -> None:
    """Build NAME's next version from the start of the topics (or an audit replay), then
    switch reads to it."""
    if from_audit and not token:
        raise typer.BadParameter("--from-audit needs a token with export_audit_log",
                                 param_hint="--token")
    try:
        settings = load_settings(ProjectionsSettings, database_url=database_url,
                                 kafka_bootstrap=kafka_bootstrap)
    except ConfigurationError as error:
        raise typer.BadParameter(str(error)) from error
    models = {model.name: model for model in read_models(settings)}

    async def work(progress: Progress) -> int:
        task = progress.add_task(f"rebuilding {name}", total=None)
        pool = await asyncpg.create_pool(settings.database_dsn, min_size=1, max_size=4)
        topics, prefix = topics_of(settings), settings.projections_group_prefix

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            if not from_audit:
                return await rebuild(
                    pool=pool, bootstrap=settings.kafka_bootstrap, models=models, name=name,
                    topics=topics, group_prefix=prefix, registry=build_registry(),
                    on_progress=advance)
            async with httpx.AsyncClient(base_url=audit_url, timeout=30.0) as client:
                return await rebuild_from_audit(
                    pool=pool, bootstrap=settings.kafka_bootstrap, models=models, name=name,
                    topics=topics, group_prefix=prefix, registry=build_registry(),
                    replays=AuditReplays(client, token=token), audit_group=audit_group,
                    on_progress=advance,
                    on_stage=lambda stage: progress.update(task, description=stage))
        finally:
            await pool.close()

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("events"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            version = asyncio.run(work(progress))
    except RebuildError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    console.print(f"{name}: version {version} now answers reads")


def _settings(database_url: str) -> ProjectionsSettings:
    try:
        return load_settings(ProjectionsSettings, database_url=database_url)
    except ConfigurationError as error:
        raise typer.BadParameter(str(error)) from error


def _model(settings: ProjectionsSettings, name: str) -> ReadModel:
    models = {model.name: model for model in read_models(settings)}
    if name not in models:
        raise typer.BadParameter(f"one of {', '.join(models)}", param_hint="NAME")
    return models[name]


DatabaseUrl = Annotated[str, typer.Option(
    "--database-url", envvar="DATABASE_URL", help="The projections service's database.")]
VersionOption = Annotated[int | None, typer.Option(
    "--version", min=1, help="Default: the version that answers reads.")]


async def _version(pool: asyncpg.Pool[Any], model: ReadModel, version: int | None) -> int:
    version = version or await active_version(pool, model.name)
    if not await failed_events.table_exists(pool, model, version):
        console.print(f"[red]{model.name} has no version {version}[/]")
        raise typer.Exit(1)
    return version


@projections_app.command("failed")
def failed_command(
    name: Annotated[str, typer.Argument(help="directory, invitations or security.")],
    database_url: DatabaseUrl, version: VersionOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
) -> None:
    """List the events NAME set aside because it could not apply them, oldest first."""
    settings = _settings(database_url)
    model = _model(settings, name)

    async def work() -> tuple[int, list[failed_events.FailedEvent]]:
        pool = await asyncpg.create_pool(settings.database_dsn, min_size=1, max_size=2)
        try:
            found = await _version(pool, model, version)
            page = await failed_events.find(pool, model, found, after=None, limit=limit)
            return found, page.items
        finally:
            await pool.close()

    found, items = asyncio.run(work())
    table = Table("event id", "type", "where", "failed at", "retries", "error",
                  title=f"{name} v{found}: {len(items)} failed event(s)")
    for item in items:
        table.add_row(str(item.event_id), item.event_type,
                      f"{item.topic}/{item.partition}@{item.offset}",
                      item.failed_at.isoformat(timespec="seconds"), str(item.retries),
                      item.error if item.retriable else f"{item.error} (not kept: rebuild)")
    Console().print(table)


@projections_app.command("retry")
def retry_command(
    name: Annotated[str, typer.Argument(help="directory, invitations or security.")],
    event_id: Annotated[UUID, typer.Argument(help="From `guestlist projections failed`.")],
    database_url: DatabaseUrl, version: VersionOption = None,
) -> None:
    """Apply a failed event of NAME again; once applied it leaves the list."""
    settings = _settings(database_url)
    model = _model(settings, name)

    async def work() -> failed_events.RetryOutcome | None:
        pool = await asyncpg.create_pool(settings.database_dsn, min_size=1, max_size=2)
        try:
            found = await _version(pool, model, version)
            return await failed_events.retry(pool, model, found, event_id, build_registry())
        finally:
            await pool.close()

    try:
        outcome = asyncio.run(work())
    except (failed_events.RetryFailed, failed_events.EventNotKept) as error:
        console.print(f"[red]{event_id} still cannot be applied: {error}[/]")
        raise typer.Exit(1) from error
    if outcome is None:
        console.print(f"[red]{event_id} is not a failed event of {name}[/]")
        raise typer.Exit(1)
    console.print(f"{event_id}: applied to {name}")
