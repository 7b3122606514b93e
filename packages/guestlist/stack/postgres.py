"""A real PostgreSQL server the stack owns, or one that already runs elsewhere.

Local development and tests only: trust authentication, loopback only. When
run as root, the server runs as the OS user `guestlist` (PostgreSQL refuses
root).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from guestlist.stack import postgres_account, processes
from guestlist.stack.ports import LOOPBACK, port_open
from guestlist.stack.postgres_account import PostgresStartError

SUPERUSER = "guestlist"
# Databases are created from names we choose; keep them plain identifiers.
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# sun_path holds 108 bytes including the terminator.
_MAX_SOCKET_PATH = 107


def find_postgres_bin() -> Path:
    """The directory with `postgres` and `initdb`.

    `GUESTLIST_PG_BIN` wins; then the newest Debian-style install; then the
    binaries shipped in the `pgserver` wheel, so a machine without a system
    PostgreSQL still gets a real server from `uv sync` alone.
    """
    if configured := os.environ.get("GUESTLIST_PG_BIN"):
        path = Path(configured)
        if not _has_server(path):
            raise PostgresStartError(f"GUESTLIST_PG_BIN={path} has no postgres and initdb")
        return path
    system = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server(p)]
    if system:
        return max(system, key=lambda p: _major_version(p.parent.name))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if _has_server(bundled):
            return bundled
    raise PostgresStartError(
        "no PostgreSQL binaries: set GUESTLIST_PG_BIN, install Debian's postgresql "
        "package, or run `uv sync` (the pgserver wheel ships them)"
    )


def _has_server(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in ("postgres", "initdb"))


def _major_version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


class PostgresServer:
    """One PostgreSQL cluster under `base_dir`: `pgdata/`, `socket/` and `server.log`."""

    def __init__(
        self,
        base_dir: Path,
        port: int = 5432,
        *,
        bin_dir: Path | None = None,
        tuning: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.base_dir = base_dir.resolve()
        self.port = port
        self.bin_dir = bin_dir
        self.tuning = dict(tuning or {})
        self.die_with_parent = die_with_parent
        self.data_dir = self.base_dir / "pgdata"
        self.socket_dir = self.base_dir / "socket"
        self.log_file = self.base_dir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    async def start(self, ready_within: float = 60.0) -> None:
        if await port_open(self.port):
            raise PostgresStartError(f"port {self.port} is already in use on {LOOPBACK}")
        bin_dir = self.bin_dir or find_postgres_bin()
        user = postgres_account.server_user()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if user:
            postgres_account.give_data_dir(self.base_dir, user)
            bin_dir = await asyncio.to_thread(postgres_account.reachable_binaries, bin_dir, user)
        if not (self.data_dir / "PG_VERSION").exists():
            await self._initdb(bin_dir, user)
        argv = [
            str(bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={LOOPBACK}",
            # Loopback TCP is what clients use; a path too long for a Unix socket
            # (deep checkouts) just turns the socket off.
            "-k", str(self.socket_dir) if _socket_fits(self.socket_dir, self.port) else "",
        ]  # fmt: skip
        for name, value in self.tuning.items():
            argv += ["-c", f"{name}={value}"]
        self._process = processes.spawn(
            argv,
            log_file=self.log_file,
            cwd=self.base_dir,
            user=user,
            die_with_parent=signal.SIGINT if self.die_with_parent else None,
        )
        await self._wait_until_ready(ready_within)

    async def _initdb(self, bin_dir: Path, user: str | None) -> None:
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
        ]  # fmt: skip
        if self.tuning.get("fsync") == "off":
            argv.append("--no-sync")
        try:
            await processes.run(argv, cwd=self.base_dir, user=user, limit=120)
        except RuntimeError as exc:
            raise PostgresStartError(f"initdb failed: {exc}") from exc

    async def _wait_until_ready(self, ready_within: float) -> None:
        deadline = time.monotonic() + ready_within
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PostgresStartError(
                    f"postgres exited with {self._process.returncode} on port {self.port}; "
                    f"end of {self.log_file}:\n{processes.log_tail(self.log_file)}"
                )
            try:
                serving = await _data_directory(self.dsn())
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                # Another server on the same port would answer too; make sure it is ours.
                if serving == str(self.data_dir):
                    return
                last_error = f"port {self.port} is answered by the server of {serving}"
            await asyncio.sleep(0.2)
        await self.stop()
        raise PostgresStartError(
            f"postgres on port {self.port} accepted no connection within {ready_within:.0f}s "
            f"({last_error}); end of {self.log_file}:\n{processes.log_tail(self.log_file)}"
        )

    async def stop(self, grace: float = 30.0) -> None:
        """Fast shutdown: open transactions roll back, then the server exits."""
        if self._process is None:
            return
        # SIGQUIT as the fallback makes the postmaster take its backends down with it.
        await processes.stop(self._process, first=signal.SIGINT, grace=grace, then=signal.SIGQUIT)
        self._process = None

    async def create_database(self, name: str) -> str:
        await create_database(self.dsn(), name)
        return self.dsn(name)

    async def drop_database(self, name: str) -> None:
        await drop_database(self.dsn(), name)


class ExternalPostgres:
    """A server that already runs (`DATABASE_URL`); start and stop leave it alone."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = urlsplit(url).port or 5432
        self.pid: int | None = None

    def dsn(self, database: str = "postgres") -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    async def start(self, ready_within: float = 10.0) -> None:
        try:
            await _select_one(self.url, ready_within)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise PostgresStartError(f"cannot connect to DATABASE_URL: {exc}") from exc

    async def stop(self, grace: float = 30.0) -> None:
        return None

    async def create_database(self, name: str) -> str:
        await create_database(self.url, name)
        return self.dsn(name)

    async def drop_database(self, name: str) -> None:
        await drop_database(self.url, name)


async def create_database(admin_dsn: str, name: str) -> None:
    """Create database `name` unless it exists (safe to call concurrently)."""
    _check_name(name)
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    _check_name(name)
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _check_name(name: str) -> None:
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")


async def _select_one(dsn: str, connect_within: float = 2.0) -> None:
    conn = await asyncpg.connect(dsn, timeout=connect_within)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def _data_directory(dsn: str) -> str:
    conn = await asyncpg.connect(dsn, timeout=2.0)
    try:
        directory: str = await conn.fetchval("SHOW data_directory")
        return directory
    finally:
        await conn.close()


def _socket_fits(socket_dir: Path, port: int) -> bool:
    return len(f"{socket_dir}/.s.PGSQL.{port}".encode()) <= _MAX_SOCKET_PATH
