"""`guestlist up --detach`, `status` and `down`, for real, on free ports."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from rich.console import Console

from guestlist.stack import control, local, processes
from guestlist.stack.kafka import describe_cluster
from guestlist.stack.ports import free_port
from guestlist.stack.state import StackState


@pytest.fixture
def var_dir() -> Iterator[Path]:
    # Reachable by the unprivileged user PostgreSQL runs as when tests run as root.
    path = Path(tempfile.mkdtemp(prefix="guestlist-stack-"))
    path.chmod(0o711)
    yield path / "var"
    shutil.rmtree(path, ignore_errors=True)


async def test_up_detached_then_status_then_down(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    options = local.StackOptions(
        var_dir=var_dir,
        start_services=False,
        detach=True,
        postgres_port=free_port(),
        kafka_port=free_port(),
        controller_port=free_port(),
        smtp_port=free_port(),
    )
    console = Console(record=True, width=200)
    try:
        assert await local.up(options, console) == 0
        state = StackState.read(options.state_file)
        assert state is not None and state.supervisor_pid is None
        parts = {c.name: c for c in state.components}
        assert set(parts) == {"postgres", "kafka", "smtp"}

        conn = await asyncpg.connect(parts["postgres"].url)
        try:
            databases = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()
        assert {"guestlist_identity", "guestlist_audit", "guestlist_projections"} <= databases
        assert await describe_cluster(parts["kafka"].url)

        assert await control.status(options.state_file, console) == 0
        with pytest.raises(local.StackError, match="still running"):
            await local.up(options, console)
    finally:
        assert await control.down(options.state_file, console) == 0

    assert not options.state_file.exists()
    for part in parts.values():
        assert part.pid is not None and not processes.pid_alive(part.pid)
