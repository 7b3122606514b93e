"""`guestlist audit verify|export`: an operator's checks on the audit log, straight from its
database (DATABASE_URL of the audit service) with the service's checkpoint key."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import uuid4

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

from eventkit.postgres_store import PostgresEventStore
from schemas.access import AuditLogExported
from services.audit.access import record_access
from services.audit.checkpoints import CheckpointSigner
from services.audit.export import ExportRequest, ExportResult, plan, stream
from services.audit.verification import RangeError, verify

audit_app = typer.Typer(help="Verify and export the audit log.", no_args_is_help=True)

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
