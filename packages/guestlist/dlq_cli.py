"""`guestlist dlq list|redrive`: what consumers could not process, and sending it back."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from eventkit.dlq import DeadLetter, list_dead_letters, redrive_from_kafka

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

dlq_app = typer.Typer(
    help="List and redrive dead-lettered events (topics <consumer-group>.dlq).",
    no_args_is_help=True,
)
T = TypeVar("T")


def run_against_kafka(console: Console, bootstrap: str, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; an unreachable broker is a one-line error, not a traceback."""
    try:
        return asyncio.run(work)
    except (KafkaError, OSError) as error:
        console.print(f"[red]Kafka at {bootstrap}: {type(error).__name__}: {error}[/]")
        raise typer.Exit(1) from error


Bootstrap = Annotated[
    str,
    typer.Option("--bootstrap", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers."),
]


def letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("group", "from", "type", "subject", "error", "attempts", "failed at", "state"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.group,
            f"{letter.topic}[{letter.partition}]@{letter.offset}",
            letter.type or "-",
            letter.subject or "-",
            letter.error,
            str(letter.attempts),
            letter.failed_at,
            "redriven" if letter.redriven else "waiting",
        )
    return table


@dlq_app.command("list")
def list_command(
    group: Annotated[
        str | None, typer.Option("--group", help="Only this consumer group's DLQ.")
    ] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """Show every DLQ entry from the beginning (read without committing anything)."""
    console = Console()
    letters = run_against_kafka(console, bootstrap, list_dead_letters(bootstrap, group=group))
    if not letters:
        console.print("no dead letters" + (f" for group {group}" if group else ""))
        return
    console.print(letters_table(letters))


@dlq_app.command("redrive")
def redrive_command(
    group: Annotated[str, typer.Option("--group", help="The consumer group whose DLQ to redrive.")],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """Republish each entry not yet redriven to its original topic and partition."""
    console = Console()
    result = run_against_kafka(console, bootstrap, redrive_from_kafka(bootstrap, group=group))
    console.print(f"redriven {result.redriven} event(s) for group {group}")
    if result.not_events:
        console.print(
            f"[yellow]passed over {result.not_events} message(s) that are not events[/]"
        )
