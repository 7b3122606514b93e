"""``guestlist invitations import FILE.csv``: a bulk upload from the terminal.

Sends the CSV to ``POST /v1/invitations/bulk`` with an Idempotency-Key made
from the file's content (running the same file twice never invites twice),
follows the batch with a progress bar and ends with a summary table.
Also runnable as ``python -m services.invitations.cli import FILE.csv``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

invitations_app = typer.Typer(help="Invitations: bulk imports.", no_args_is_help=True)
console = Console()


@invitations_app.callback()
def invitations() -> None:
    """Invitations: bulk imports."""


def _summary(batch: dict[str, Any], *, show: int) -> Table:
    table = Table(title=f"batch {batch['batch_id']}")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome in ("created", "duplicate", "invalid"):
        table.add_row(outcome, str(batch[outcome]))
    problems = [row for row in batch["rows"] if row["outcome"] != "created"][:show]
    if problems:
        table.add_section()
        for row in problems:
            table.add_row(f"row {row['row']}: {row['outcome']}", row.get("reason") or "")
    return table


@invitations_app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="CSV with invitee_email and optional columns.")],
    url: Annotated[str, typer.Option(envvar="INVITATIONS_URL",
                                     help="The invitations service.")] = "http://127.0.0.1:8002",
    token: Annotated[str, typer.Option(envvar="GUESTLIST_TOKEN",
                                       help="An access token with manage_invitations.")] = "",
    show: Annotated[int, typer.Option(help="How many refused rows to list.")] = 20,
) -> None:
    """Invite everyone in FILE.csv (columns: invitee_email, platform_role, community_role,
    locale, greeting, valid_until)."""
    if not token:
        console.print("[red]give an access token: --token or GUESTLIST_TOKEN[/]")
        raise typer.Exit(2)
    body = file.read_bytes()
    headers = {
        "Authorization": f"Bearer {token}", "Content-Type": "text/csv",
        "Idempotency-Key": "import-" + hashlib.sha256(body).hexdigest(),
    }
    with httpx.Client(base_url=url, timeout=120) as client:
        answer = client.post("/v1/invitations/bulk", content=body, headers=headers)
        if answer.status_code != 202:
            detail = answer.json().get("detail", answer.text) if answer.content else ""
            console.print(f"[red]upload refused ({answer.status_code}): {detail}[/]")
            raise typer.Exit(1)
        batch_id = answer.json()["batch_id"]
        total = int(answer.json()["rows"])
        with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("inviting", total=total)
            while True:
                batch = client.get(f"/v1/invitations/bulk/{batch_id}",
                                   headers={"Authorization": headers["Authorization"]}).json()
                progress.update(task, completed=batch["processed"])
                if batch["completed_at"] is not None:
                    break
                time.sleep(0.5)
    console.print(_summary(batch, show=show))
    raise typer.Exit(0 if batch["invalid"] == 0 else 1)


if __name__ == "__main__":
    invitations_app()
