"""`guestlist up`: the whole local stack on this machine, in order.

PostgreSQL and Kafka (together), the SMTP sink, databases and topics, then the
five services. Stopping goes the other way: services first, so they can finish
what they are doing against servers that are still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from guestlist.stack import processes, topology
from guestlist.stack.kafka import ExternalKafka, KafkaBroker, create_topics
from guestlist.stack.ports import LOOPBACK, port_open
from guestlist.stack.postgres import ExternalPostgres, PostgresServer
from guestlist.stack.services import (
    SERVICES,
    ServiceSpec,
    ServiceStartError,
    client_secrets,
    launch,
    service_env,
    wait_healthy,
)
from guestlist.stack.state import Component, StackState

T = TypeVar("T")


class StackError(RuntimeError):
    """The stack cannot be brought up; the message says what to do."""


@dataclass
class StackOptions:
    var_dir: Path = Path("var")
    start_services: bool = True
    keep_going: bool = False  # keep the rest running when a service fails to start
    detach: bool = False
    postgres_port: int = 5432
    kafka_port: int = 9092
    controller_port: int = 9093
    smtp_port: int = 1025
    service_ready_within: float = 90.0

    @property
    def state_file(self) -> Path:
        return self.var_dir / "stack.json"


@dataclass
class LocalStack:
    options: StackOptions
    console: Console
    postgres: PostgresServer | ExternalPostgres | None = None
    kafka: KafkaBroker | ExternalKafka | None = None
    smtp: subprocess.Popen[bytes] | None = None
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    async def _step(self, label: str, work: Awaitable[T]) -> T:
        started = time.monotonic()
        with self.console.status(f"{label}…"):
            try:
                result = await work
            except Exception as exc:
                self.console.print(f"[red]✗[/] {label}")
                raise StackError(f"{label} failed: {exc}") from exc
        self.console.print(f"[green]✓[/] {label} [dim]({time.monotonic() - started:.1f}s)[/]")
        return result

    async def start(self) -> None:
        o, var = self.options, self.options.var_dir.absolute()
        own = not o.detach  # a foreground stack dies with its supervisor
        if url := os.environ.get("DATABASE_URL"):
            self.postgres = ExternalPostgres(url)
        else:
            self.postgres = PostgresServer(var / "postgres", o.postgres_port, die_with_parent=own)
        if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
            self.kafka = ExternalKafka(bootstrap)
        else:
            self.kafka = KafkaBroker(
                var / "kafka", o.kafka_port, o.controller_port, die_with_parent=own
            )
        await self._step("PostgreSQL and Kafka", self._start_servers())
        await self._step("SMTP sink", self._start_smtp(var, own))
        pg = self.postgres
        await self._step(
            "databases", asyncio.gather(*(pg.create_database(s.database) for s in SERVICES))
        )
        await self._step("topics", create_topics(self.kafka.bootstrap, topology.stack_topics()))
        if o.start_services:
            await self._start_services(var, own)

    async def _start_servers(self) -> None:
        assert self.postgres is not None and self.kafka is not None
        # Both run to the end, so a failure of one never leaves the other half-started.
        outcomes = await asyncio.gather(
            self.postgres.start(), self.kafka.start(), return_exceptions=True
        )
        errors = [str(e) for e in outcomes if isinstance(e, BaseException)]
        if errors:
            raise StackError("\n".join(errors))

    async def _start_smtp(self, var: Path, own: bool) -> None:
        port = self.options.smtp_port
        if await port_open(port):
            raise StackError(f"port {port} is already in use on {LOOPBACK}")
        argv = [sys.executable, "-m", "guestlist.stack.smtp_sink", "--port", str(port),
                "--dir", str(var / "mail")]  # fmt: skip
        log = var / "log" / "smtp.log"
        self.smtp = processes.spawn(
            argv, log_file=log, die_with_parent=signal.SIGTERM if own else None
        )
        for _ in range(100):
            if self.smtp.poll() is not None:
                raise StackError(f"the SMTP sink exited:\n{processes.log_tail(log)}")
            if await port_open(port):
                return
            await asyncio.sleep(0.1)
        raise StackError(f"the SMTP sink did not listen on {port}:\n{processes.log_tail(log)}")

    async def _start_services(self, var: Path, own: bool) -> None:
        assert self.postgres is not None and self.kafka is not None
        pg, bootstrap = self.postgres, self.kafka.bootstrap
        clients = client_secrets()

        async def start_one(spec: ServiceSpec) -> None:
            env = service_env(
                spec,
                database_url=pg.dsn(spec.database),
                kafka_bootstrap=bootstrap,
                smtp_port=self.options.smtp_port,
                clients=clients,
            )
            log = var / "log" / f"{spec.name}.log"
            try:
                process = launch(spec, env, log_file=log, die_with_parent=own)
                self.services[spec.name] = process
                await wait_healthy(spec, process, log, self.options.service_ready_within)
            except ServiceStartError as exc:
                self.failed[spec.name] = str(exc)
                self.console.print(f"[red]✗[/] service {exc}")
            else:
                self.console.print(f"[green]✓[/] service {spec.name} on {spec.url}")

        with self.console.status("services…"):
            await asyncio.gather(*(start_one(spec) for spec in SERVICES))
        if self.failed and not self.options.keep_going:
            raise StackError(f"services that did not start: {', '.join(self.failed)}")

    async def stop(self) -> None:
        """Services, then the SMTP sink, then Kafka, then PostgreSQL."""
        with self.console.status("stopping…"):
            await asyncio.gather(
                *(processes.stop(p, first=signal.SIGTERM, grace=15) for p in self.services.values())
            )
            self.services.clear()
            if self.smtp is not None:
                await processes.stop(self.smtp, first=signal.SIGTERM, grace=5)
                self.smtp = None
            if self.kafka is not None:
                await self.kafka.stop()
            if self.postgres is not None:
                await self.postgres.stop()
        self.console.print("[green]✓[/] stopped")

    def state(self) -> StackState:
        assert self.postgres is not None and self.kafka is not None
        var = self.options.var_dir.absolute()
        pg, kafka, smtp_port = self.postgres, self.kafka, self.options.smtp_port
        parts = [
            Component(
                name="postgres",
                kind="postgres",
                url=pg.dsn(),
                port=pg.port,
                pid=pg.pid,
                stop_signal="SIGINT",
                last_signal="SIGQUIT",
                command_marker="postgres",
                log=str(var / "postgres" / "server.log"),
            ),
            Component(
                name="kafka",
                kind="kafka",
                url=kafka.bootstrap,
                port=kafka.port,
                pid=kafka.pid,
                command_marker="kafka.Kafka",
                log=str(var / "kafka" / "broker.log"),
            ),
        ]
        if self.smtp is not None:
            parts.append(
                Component(
                    name="smtp",
                    kind="smtp",
                    url=f"smtp://{LOOPBACK}:{smtp_port}",
                    port=smtp_port,
                    pid=self.smtp.pid,
                    command_marker="guestlist.stack.smtp_sink",
                    log=str(var / "log" / "smtp.log"),
                )
            )
        for spec in SERVICES:
            if (process := self.services.get(spec.name)) and spec.name not in self.failed:
                parts.append(
                    Component(
                        name=spec.name,
                        kind="service",
                        url=spec.url,
                        port=spec.port,
                        pid=process.pid,
                        health_url=spec.health_url,
                        command_marker=spec.module,
                        log=str(var / "log" / f"{spec.name}.log"),
                    )
                )
        supervisor = None if self.options.detach else os.getpid()
        return StackState(supervisor_pid=supervisor, components=parts)

    def print_summary(self) -> None:
        table = Table(title="Guestlist local stack")
        for column in ("part", "address", "log"):
            table.add_column(column, overflow="fold")
        for part in self.state().components:
            address = f"{part.url}/docs" if part.kind == "service" else part.url
            table.add_row(part.name, address, _relative(part.log) if part.log else "")
        for name in self.failed:
            table.add_row(f"[red]{name}[/]", "[red]not started[/]", "")
        self.console.print(table)


async def up(options: StackOptions, console: Console) -> int:
    """Bring the stack up; unless detached, keep it until Ctrl-C or SIGTERM."""
    previous = StackState.read(options.state_file)
    if previous and _still_running(previous):
        raise StackError(
            f"a stack from {options.state_file} is still running: `guestlist status` shows it, "
            "`guestlist down` stops it"
        )
    if previous:
        StackState.forget(options.state_file)  # left by a stack that was killed
    stack = LocalStack(options, console)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    starting = asyncio.ensure_future(stack.start())

    def on_signal() -> None:
        if not stopping.is_set():
            console.print("[yellow]stopping…[/]")
        stopping.set()
        starting.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        try:
            await starting
        except BaseException:
            await stack.stop()
            raise
        stack.state().write(options.state_file)
        stack.print_summary()
        if options.detach:
            console.print(f"Detached; `guestlist down` stops it (state in {options.state_file}).")
            return 1 if stack.failed else 0
        console.print("Running. Ctrl-C stops everything.")
        try:
            await _supervise(stack, stopping)
        finally:
            await stack.stop()
            StackState.forget(options.state_file)
        return 0
    except asyncio.CancelledError:
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _supervise(stack: LocalStack, stopping: asyncio.Event) -> None:
    """Wait for a stop request; say so when a service dies meanwhile."""
    reported: set[str] = set()
    while not stopping.is_set():
        for name, process in stack.services.items():
            if process.poll() is not None and name not in reported:
                reported.add(name)
                stack.console.print(f"[red]service {name} exited with {process.returncode}[/]")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 1.0)


def _still_running(state: StackState) -> bool:
    if state.supervisor_pid and processes.runs(state.supervisor_pid, "guestlist"):
        return True
    return any(
        c.pid is not None and processes.runs(c.pid, c.command_marker) for c in state.components
    )


def _relative(path: str) -> str:
    return os.path.relpath(path) if path.startswith(os.getcwd()) else path
