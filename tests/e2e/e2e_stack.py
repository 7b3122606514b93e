"""The whole Guestlist stack as a user runs it, for the end-to-end tests.

The five services run as `python -m services.<name>` processes on free ports,
each on its own fresh database of the session's PostgreSQL, against the
session's Kafka broker and an SMTP sink, with the settings `guestlist up`
gives them (`guestlist.stack.services.service_env`). The tests talk to them
only through HTTP, the `guestlist` CLI and the mails that reach the sink.

The services use the stack's own topic and consumer-group names (identity's
are not configurable), so one stack runs per test session at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx

from guestlist.stack import processes
from guestlist.stack.kafka import create_topics
from guestlist.stack.ports import free_port
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
from guestlist.stack.smtp_sink import SmtpSink
from guestlist.stack.topology import stack_topics

T = TypeVar("T")
START_WITHIN = 120.0  # seconds for every service to answer /healthz and /readyz
REPO = Path(__file__).resolve().parents[2]
# The console script `uv run guestlist` runs, installed beside this interpreter.
GUESTLIST = Path(sys.executable).with_name("guestlist")


class StackFailure(AssertionError):
    """The stack did not start, or a wait ran out; the message says what happened."""


@dataclass
class Stack:
    specs: dict[str, ServiceSpec]
    envs: dict[str, dict[str, str]]
    logs: dict[str, Path]
    sink: SmtpSink
    audit_key_file: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return self.specs[service].url

    def client(self, service: str, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url(service), headers=headers, timeout=15.0)

    async def cli(self, service: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`guestlist ARGS` with the service's own environment, as an operator runs it."""
        env = {**os.environ, **self.envs[service], "COLUMNS": "200"}
        return await asyncio.to_thread(
            subprocess.run, [str(GUESTLIST), *args],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )

    def log_tail(self, service: str, lines: int = 30) -> str:
        return processes.log_tail(self.logs[service], lines)

    def mails(self) -> list[EmailMessage]:
        parsed = []
        for path in self.sink.messages():
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    async def mail_to(
        self, address: str, *, matching: Callable[[EmailMessage], bool] = lambda _: True,
        within: float = 20.0,
    ) -> EmailMessage:
        """The first mail to `address` that matches, once it reached the sink."""

        def found() -> EmailMessage | None:
            for message in self.mails():
                if address in message.get("X-Envelope-To", "") and matching(message):
                    return message
            return None

        try:
            return await eventually(found, within=within, what=f"a mail to {address}")
        except StackFailure as failure:
            arrived = [(m["X-Envelope-To"], m["Subject"]) for m in self.mails()]
            raise StackFailure(f"{failure}; the sink holds {arrived}") from None


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], *, within: float = 15.0,
    what: str = "the condition", every: float = 0.2,
) -> T:
    """Poll `probe` until it answers something truthy, for at most `within` seconds."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        outcome = probe()
        if asyncio.iscoroutine(outcome) or isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return outcome
        last = outcome
        if time.monotonic() >= deadline:
            raise StackFailure(f"{what} did not happen within {within:.0f}s (last: {last!r})")
        await asyncio.sleep(every)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, f"no text part in {message['Subject']!r}"
    content = part.get_content()
    assert isinstance(content, str)
    return content


@asynccontextmanager
async def running_stack(
    postgres: PostgresServer | ExternalPostgres, kafka_bootstrap: str, scratch: Path
) -> AsyncIterator[Stack]:
    """Start the SMTP sink and the five services; stop them (services first) at the end."""
    run = uuid.uuid4().hex[:8]
    specs = {spec.name: ServiceSpec(spec.name, free_port()) for spec in SERVICES}
    databases = {name: f"e2e_{run}_{name}" for name in specs}
    sink = SmtpSink(scratch / "mail", free_port())
    await sink.start()
    urls = await asyncio.gather(*(postgres.create_database(db) for db in databases.values()))
    await create_topics(kafka_bootstrap, stack_topics())
    clients = client_secrets()
    audit_key_file = scratch / "audit" / "checkpoint-signing-key.pem"
    envs = {
        name: {
            **service_env(spec, database_url=url, kafka_bootstrap=kafka_bootstrap,
                          smtp_port=sink.port, clients=clients, peers=tuple(specs.values())),
            "AUDIT_SIGNING_KEY_FILE": str(audit_key_file),
            "LOG_FORMAT": "console",
            # The scheduler passes come sooner than in production; nothing else changes.
            "SCHEDULER_INTERVAL": "1",
        }
        for (name, spec), url in zip(specs.items(), urls, strict=True)
    }
    logs = {name: scratch / "log" / f"{name}.log" for name in specs}
    stack = Stack(specs=specs, envs=envs, logs=logs, sink=sink, audit_key_file=audit_key_file)
    try:
        for name, spec in specs.items():
            stack.processes[name] = launch(spec, envs[name], log_file=logs[name],
                                           die_with_parent=True)
        try:
            await asyncio.gather(*(
                wait_healthy(spec, stack.processes[name], logs[name], START_WITHIN)
                for name, spec in specs.items()))
            await asyncio.gather(*(_wait_ready(stack, name) for name in specs))
        except ServiceStartError as error:
            raise StackFailure(str(error)) from error
        yield stack
    finally:
        await asyncio.gather(*(processes.stop(p, first=signal.SIGTERM, grace=15)
                               for p in stack.processes.values()))
        await sink.stop()
        for db in databases.values():
            with contextlib.suppress(Exception):  # a leftover test database harms nobody
                await postgres.drop_database(db)


async def _wait_ready(stack: Stack, name: str) -> None:
    """/readyz: database, Kafka and consumers that joined their groups."""
    last: Mapping[str, Any] | str = "no answer"

    async def ready() -> bool:
        nonlocal last
        async with stack.client(name) as client:
            try:
                answer = await client.get("/readyz")
            except httpx.HTTPError as error:
                last = repr(error)
                return False
        last = answer.text
        return answer.status_code == 200

    try:
        await eventually(ready, within=START_WITHIN, what=f"{name} /readyz 200", every=0.5)
    except StackFailure as failure:
        raise StackFailure(f"{failure}; answer: {last}\n{stack.log_tail(name)}") from None
