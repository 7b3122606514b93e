"""The servers one test session shares: one PostgreSQL, one Kafka broker.

Own servers run on free ports in a temporary directory, so a dev stack on
5432/9092 keeps running beside the tests; `DATABASE_URL` / `KAFKA_BOOTSTRAP`
select existing servers instead. `tests/conftest.py` turns this into fixtures.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from guestlist.stack.kafka import ExternalKafka, KafkaBroker
from guestlist.stack.ports import free_port
from guestlist.stack.postgres import ExternalPostgres, PostgresServer

# Test data is thrown away at the end of the session: durability buys nothing.
TEST_POSTGRES_TUNING = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
# Fewer internal partitions make the broker ready sooner; one node needs no more.
TEST_KAFKA_SETTINGS = {
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.num.partitions": "5",
}


class ServerStartError(RuntimeError):
    """A server the tests need did not start; the message says why."""


class ServerHarness:
    """Starts the servers on demand, each at most once, and stops what it started."""

    def __init__(self) -> None:
        self._base_dir: Path | None = None
        self._postgres: PostgresServer | ExternalPostgres | None = None
        self._kafka: KafkaBroker | ExternalKafka | None = None
        self._started: dict[str, asyncio.Task[None]] = {}

    def _scratch(self, name: str) -> Path:
        if self._base_dir is None:
            # Not pytest's tmp_path: that is private to root, and PostgreSQL runs
            # as an unprivileged user when the tests run as root.
            self._base_dir = Path(tempfile.mkdtemp(prefix="guestlist-test-"))
            self._base_dir.chmod(0o711)
        return self._base_dir / name

    async def start(self, *, postgres: bool, kafka: bool) -> None:
        """Start the requested servers concurrently; wait for both even if one fails."""
        wanted = []
        if postgres:
            wanted.append(self._start_once("postgres"))
        if kafka:
            wanted.append(self._start_once("kafka"))
        await asyncio.gather(*wanted, return_exceptions=True)

    async def postgres(self) -> PostgresServer | ExternalPostgres:
        await self._start_once("postgres")
        assert self._postgres is not None
        return self._postgres

    async def kafka(self) -> KafkaBroker | ExternalKafka:
        await self._start_once("kafka")
        assert self._kafka is not None
        return self._kafka

    def _start_once(self, name: str) -> asyncio.Task[None]:
        if name not in self._started:
            starting = self._start_postgres() if name == "postgres" else self._start_kafka()
            self._started[name] = asyncio.ensure_future(starting)
        return self._started[name]

    async def _start_postgres(self) -> None:
        if url := os.environ.get("DATABASE_URL"):
            self._postgres = ExternalPostgres(url)
        else:
            self._postgres = PostgresServer(
                self._scratch("postgres"), free_port(), tuning=TEST_POSTGRES_TUNING
            )
        try:
            await self._postgres.start()
        except Exception as exc:
            raise ServerStartError(f"PostgreSQL did not start: {exc}") from exc

    async def _start_kafka(self) -> None:
        if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
            self._kafka = ExternalKafka(bootstrap)
        else:
            self._kafka = KafkaBroker(
                self._scratch("kafka"), free_port(), free_port(), settings=TEST_KAFKA_SETTINGS
            )
        try:
            await self._kafka.start()
        except Exception as exc:
            raise ServerStartError(f"the Kafka broker did not start: {exc}") from exc

    async def stop(self) -> None:
        for task in self._started.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._started.values(), return_exceptions=True)
        servers = [s for s in (self._kafka, self._postgres) if s is not None]
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
