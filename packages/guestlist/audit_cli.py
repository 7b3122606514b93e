"""`guestlist audit verify|export|replay`: an operator's checks on the audit log, straight from
its database (DATABASE_URL of the audit service) with the service's checkpoint key; replays
publish to Kafka (KAFKA_BOOTSTRAP) themselves."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import asyncpg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from eventkit.envelope import EnvelopeError, EventType
from eventkit.postgres_store import PostgresEventStore
from eventkit.publisher import KafkaPublisher
from schemas.access import AuditLogExported
from services.audit import replay
from services.audit.access import record_access
from services.audit.checkpoints import CheckpointSigner
from services.audit.export import ExportRequest, ExportResult, plan, stream
from services.audit.settings import DEFAULT_TOPIC_PATTERN
from services.audit.verification import RangeError, verify

audit_app = typer.Typer(help="Verify, export and replay the audit log.", no_args_is_help=True)

DatabaseUrl = Annotated[str, typer.Option(
    "--database-url", envvar="DATABASE_URL", help="The audit service's database.")]
KeyFile = Annotated[Path, typer.Option(
    "--key-file", envvar="AUDIT_SIGNING_KEY_FILE", help="The checkpoint signing key (PEM).")]
First = Annotated[int | None, typer.Option("--from", min=1, help="First sequence.")]
Last = Annotated[int | None, typer.Option("--to", min=1, help="Last sequence.")]
DEFAULT_KEY = Path("var/audit/checkpoint-signing-key.pem")


def _signer(key_file: Path) -> CheckpointSigner:
    if not key_file.exists():
        raise typer.BadParameter(f"{key_file} does not exist", param_hint="--key-file")
    return CheckpointSigner.from_file(key_file)


@audit_app.command("verify")
def verify_command(
    database_url: DatabaseUrl, key_file: KeyFile = DEFAULT_KEY, first: First = None,
    last: Last = None,
) -> None:
    """Recompute the chain and check the checkpoints; exit 1 when anything is wrong."""
    signer = _signer(key_file)

    async def work() -> dict[str, Any]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            return (await verify(pool, signer.public_key, first=first, last=last,
                                 dsn=database_url, processes=os.cpu_count() or 1)).as_json()
        finally:
            await pool.close()

    try:
        report = asyncio.run(work())
    except RangeError as error:
        raise typer.BadParameter(str(error), param_hint=f"--{error.field}") from error
    typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(0 if report["ok"] else 1)


@audit_app.command("export")
def export_command(
    output: Annotated[Path, typer.Argument(help="File to write.")],
    database_url: DatabaseUrl, key_file: KeyFile = DEFAULT_KEY, first: First = None,
    last: Last = None,
    event_type: Annotated[str | None, typer.Option("--type")] = None,
    subject: Annotated[str | None, typer.Option("--subject")] = None,
    export_format: Annotated[str, typer.Option("--format")] = "ndjson",
    access_topic: Annotated[str, typer.Option(envvar="AUDIT_ACCESS_TOPIC")] = "audit.access",
) -> None:
    """Write a verifiable export (NDJSON or CSV) ending with its covering checkpoint."""
    if export_format not in ("ndjson", "csv"):
        raise typer.BadParameter("ndjson or csv", param_hint="--format")
    fmt: Literal["ndjson", "csv"] = "csv" if export_format == "csv" else "ndjson"
    signer = _signer(key_file)
    request = ExportRequest(first=first, last=last, type=event_type, subject=subject, format=fmt)
    console = Console(stderr=True)

    async def work() -> ExportResult:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
        result = ExportResult()
        try:
            start, end, checkpoint = await plan(pool, signer, request)
            with Progress(TextColumn("exporting"), BarColumn(), TransferSpeedColumn(),
                          console=console) as progress, output.open("wb") as out:
                task = progress.add_task("export", total=checkpoint.sequence - start + 1)
                async for chunk in stream(pool, signer, request, start, end, checkpoint, result):
                    await asyncio.to_thread(out.write, chunk)
                    progress.update(task, advance=chunk.count(b"\n"))
            await record_access(
                PostgresEventStore(pool),
                AuditLogExported(actor_id=None, export_id=uuid4(), filters=request.filters(),
                                 entry_count=result.entries, export_sha256=result.sha256),
                topic=access_topic, actor="operator",
            )
            return result
        finally:
            await pool.close()

    try:
        result = asyncio.run(work())
    except RangeError as error:
        raise typer.BadParameter(str(error), param_hint=f"--{error.field}") from error
    typer.echo(json.dumps({"file": str(output), "entries": result.entries,
                           "sha256": result.sha256}))


@audit_app.command("replay")
def replay_command(
    database_url: DatabaseUrl,
    target_topic: Annotated[str, typer.Option(
        "--target-topic", help="Where to publish: lower-case words ending in '.replay'.")],
    first: First = None, last: Last = None,
    event_types: Annotated[list[str] | None, typer.Option(
        "--type", help="Only this type (repeatable).")] = None,
    subjects: Annotated[list[str] | None, typer.Option(
        "--subject", help="Only this subject (repeatable).")] = None,
    kafka_bootstrap: Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP")] = "127.0.0.1:9092",
    log_pattern: Annotated[str, typer.Option(
        envvar="AUDIT_TOPIC_PATTERN", help="The topics the log reads.")] = DEFAULT_TOPIC_PATTERN,
    access_topic: Annotated[str, typer.Option(envvar="AUDIT_ACCESS_TOPIC")] = "audit.access",
) -> None:
    """Publish the matching entries again, in log order, with ce_replayid; exit 1 if it fails.

    Interrupted, the replay stays 'running' and the audit service resumes it at its next start.
    """
    try:
        replay.check_target(target_topic, log_pattern=log_pattern)
    except replay.TargetError as error:
        raise typer.BadParameter(str(error), param_hint="--target-topic") from error
    for name in event_types or ():
        try:
            EventType.parse(name)
        except EnvelopeError as error:
            raise typer.BadParameter(str(error), param_hint="--type") from error
    request = replay.ReplayRequest(target_topic=target_topic, first=first, last=last,
                                   types=event_types, subjects=subjects)
    console = Console(stderr=True)

    async def work() -> dict[str, Any] | None:
        if not await replay.topic_exists(kafka_bootstrap, target_topic):
            raise typer.BadParameter("no such topic; create it first", param_hint="--target-topic")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
        publisher = KafkaPublisher(kafka_bootstrap, client_id="guestlist-audit-replay")
        try:
            started = await replay.start(PostgresEventStore(pool), request, replay_id=uuid4(),
                                         actor="operator", actor_id=None,
                                         access_topic=access_topic)
            replay_id = UUID(started["replay_id"])
            await publisher.start()
            running = asyncio.create_task(replay.run(pool, publisher, replay_id,
                                                     stopping=asyncio.Event()))
            with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                          console=console) as progress:
                task = progress.add_task("replay", total=started["total"])
                while not running.done():
                    await asyncio.wait([running], timeout=0.25)
                    now = await replay.find(pool, replay_id)
                    if now is not None:
                        progress.update(task, completed=now["published"])
            return await running
        finally:
            await publisher.stop()
            await pool.close()

    try:
        outcome = asyncio.run(work())
    except RangeError as error:
        raise typer.BadParameter(str(error), param_hint=f"--{error.field}") from error
    typer.echo(json.dumps(outcome, indent=2))
    raise typer.Exit(0 if outcome is not None and outcome["status"] == "completed" else 1)
