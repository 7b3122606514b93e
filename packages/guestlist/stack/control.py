"""`guestlist down` and `guestlist status`: act on a stack from its state file."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from guestlist.stack import processes
from guestlist.stack.kafka import describe_cluster
from guestlist.stack.ports import LOOPBACK, port_open
from guestlist.stack.postgres import SUPERUSER
from guestlist.stack.services import SERVICES, healthy
from guestlist.stack.state import Component, StackState

# Stop order: whatever uses a server goes before the server.
_STOP_ORDER = ("service", "smtp", "kafka", "postgres")


async def down(state_file: Path, console: Console) -> int:
    state = StackState.read(state_file)
    if state is None:
        console.print(f"No stack state at {state_file}: nothing to stop.")
        return 0
    supervisor = state.supervisor_pid
    if supervisor and processes.runs(supervisor, "guestlist"):
        # The foreground `guestlist up` stops everything in order itself.
        with console.status(f"asking guestlist up (pid {supervisor}) to stop…"):
            await processes.stop(supervisor, first=signal.SIGTERM, grace=120)
    else:
        for kind in _STOP_ORDER:
            parts = [c for c in state.components if c.kind == kind and c.pid is not None]
            with console.status(f"stopping {', '.join(c.name for c in parts) or kind}…"):
                await asyncio.gather(*(_stop_component(c) for c in parts))
    StackState.forget(state_file)
    console.print("[green]✓[/] stack stopped")
    return 0


async def _stop_component(part: Component) -> None:
    assert part.pid is not None
    if not processes.runs(part.pid, part.command_marker):
        return  # gone already, or the pid now belongs to someone else
    await processes.stop(
        part.pid,
        first=signal.Signals[part.stop_signal],
        grace=30,
        then=signal.Signals[part.last_signal],
    )


def _default_components() -> list[Component]:
    """What a stack started with the default ports would have, for probing without state."""
    return [
        Component(
            "postgres", "postgres", f"postgresql://{SUPERUSER}@{LOOPBACK}:5432/postgres", 5432
        ),
        Component("kafka", "kafka", f"{LOOPBACK}:9092", 9092),
        Component("smtp", "smtp", f"smtp://{LOOPBACK}:1025", 1025),
        *(Component(s.name, "service", s.url, s.port, health_url=s.health_url) for s in SERVICES),
    ]


async def _probe(part: Component) -> bool:
    if part.kind == "service" and part.health_url:
        return await healthy(part.health_url)
    if part.kind == "kafka":
        if not await port_open(part.port):
            return False
        try:
            await asyncio.wait_for(describe_cluster(part.url), 5)
        except Exception:  # any failure means: not answering
            return False
        return True
    return await port_open(part.port)


async def status(state_file: Path, console: Console) -> int:
    """Print what runs where; exit 0 only if every part answers."""
    state = StackState.read(state_file)
    parts = state.components if state else _default_components()
    if state is None:
        console.print(f"[dim]No state at {state_file}; probing the default ports.[/]")
    started = time.monotonic()
    answers = await asyncio.gather(*(_probe(p) for p in parts))
    table = Table(title="Guestlist local stack")
    for column in ("part", "address", "pid", "process", "healthy"):
        table.add_column(column, overflow="fold")
    for part, ok in zip(parts, answers, strict=True):
        if part.pid is None:
            process = "external" if state else "?"
        elif processes.runs(part.pid, part.command_marker):
            process = "running"
        else:
            process = "[red]gone[/]"
        table.add_row(
            part.name,
            part.url,
            str(part.pid or ""),
            process,
            "[green]yes[/]" if ok else "[red]no[/]",
        )
    console.print(table)
    console.print(f"[dim]probed in {time.monotonic() - started:.1f}s[/]")
    return 0 if all(answers) else 1
