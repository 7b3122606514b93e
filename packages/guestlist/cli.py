"""The `guestlist` command.

Commands stay thin: they parse options and call into `guestlist.stack` (or
the module owning the feature). Other areas add their own groups here with
`app.add_typer(<their typer app>, name="...")`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from guestlist.admin_cli import admin_app
from guestlist.audit_cli import audit_app
from guestlist.dlq_cli import dlq_app
from guestlist.projections_cli import projections_app
from guestlist.stack import control, local
from services.invitations.cli import invitations_app

app = typer.Typer(
    name="guestlist",
    help="Guestlist: user management on Kafka and PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
app.add_typer(dlq_app, name="dlq")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(projections_app, name="projections")
app.add_typer(invitations_app, name="invitations")

VarDir = Annotated[
    Path, typer.Option("--var-dir", help="Where the stack keeps data, logs and its state file.")
]


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave the stack running and return.")
    ] = False,
    services: Annotated[
        bool, typer.Option(help="Start the five services (--no-services: servers only).")
    ] = True,
    keep_going: Annotated[
        bool, typer.Option(help="Keep the stack up when some service fails to start.")
    ] = False,
    var_dir: VarDir = Path("var"),
) -> None:
    """Start PostgreSQL, Kafka, the SMTP sink and the five services on this machine."""
    options = local.StackOptions(
        var_dir=var_dir, start_services=services, keep_going=keep_going, detach=detach
    )
    try:
        code = asyncio.run(local.up(options, console))
    except local.StackError as exc:
        console.print(f"[red]{exc}[/]")
        code = 1
    raise typer.Exit(code)


@app.command()
def down(var_dir: VarDir = Path("var")) -> None:
    """Stop the stack that `guestlist up` started."""
    raise typer.Exit(asyncio.run(control.down(var_dir / "stack.json", console)))


@app.command()
def status(var_dir: VarDir = Path("var")) -> None:
    """Show what runs, on which port, and whether it answers."""
    raise typer.Exit(asyncio.run(control.status(var_dir / "stack.json", console)))
