"""Each service starts as a real app on its own PostgreSQL database and the real Kafka."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from eventkit.settings import ServiceSettings
from guestlist.stack.kafka import create_topics
from guestlist.stack.topology import stack_topics
from services.audit.bootstrap import build_app as build_audit
from services.audit.settings import AuditSettings
from services.identity.bootstrap import build_app as build_identity
from services.identity.settings import IdentitySettings
from services.invitations.bootstrap import build_app as build_invitations
from services.invitations.settings import InvitationsSettings
from services.notifications.bootstrap import build_app as build_notifications
from services.notifications.settings import NotificationsSettings
from services.projections.bootstrap import build_app as build_projections
from services.projections.settings import ProjectionsSettings

pytestmark = pytest.mark.integration

SERVICES: dict[str, tuple[type[ServiceSettings], Callable[[Any], FastAPI], int]] = {
    "identity": (IdentitySettings, build_identity, 8001),
    "invitations": (InvitationsSettings, build_invitations, 8002),
    "notifications": (NotificationsSettings, build_notifications, 8003),
    "audit": (AuditSettings, build_audit, 8004),
    "projections": (ProjectionsSettings, build_projections, 8005),
}


# Keeps the audit log's consumer out of other tests' topics and consumer groups.
OWN_SETTINGS: dict[str, dict[str, str]] = {
    "audit": {
        "audit_consumer_group": f"apps-{os.getpid()}", "audit_topic_pattern": r"^apps\.none$",
    },
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running(
    name: str, database_url: str, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings_type, build_app, _ = SERVICES[name]
    settings = settings_type(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, **OWN_SETTINGS.get(name, {}),
    )
    app = build_app(settings)
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
            yield client


@pytest.mark.parametrize("name", sorted(SERVICES))
async def test_the_service_starts_and_reports_itself(
    name: str, database_url: str, kafka_bootstrap: str
) -> None:
    # As `guestlist up` does: consumers of a topic that does not exist never join.
    await create_topics(kafka_bootstrap, stack_topics())
    async with running(name, database_url, kafka_bootstrap) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        for _ in range(300):  # a service with consumers is ready once they joined their group
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.2)
            ready = await client.get("/readyz")
        openapi = await client.get("/openapi.json")
        docs = await client.get("/docs")
        metrics = await client.get("/metrics")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200, ready.text
    checks = {check["name"]: check["ok"] for check in ready.json()["checks"]}
    # Consumers and read models add checks of their own; these three are everyone's.
    own = {name for name in checks if name.startswith(("consumer ", "read model "))}
    assert {k: v for k, v in checks.items() if k not in own} == {
        "database": True, "kafka": True, "outbox": True
    }
    assert all(checks.values())

    assert openapi.status_code == 200
    document = openapi.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == f"Guestlist {name}"
    assert {"/healthz", "/readyz"} <= document["paths"].keys()
    assert docs.status_code == 200 and "swagger" in docs.text.lower()

    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics.text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/readyz"' in (
        metrics.text
    )


async def test_migrations_are_applied_at_start(database_url: str, kafka_bootstrap: str) -> None:
    async with running("invitations", database_url, kafka_bootstrap):
        pass

    connection = await asyncpg.connect(database_url)
    try:
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await connection.close()
    assert {"events", "outbox", "processed_events", "idempotency_keys"} <= tables


async def test_an_unreachable_kafka_makes_the_service_not_ready(database_url: str) -> None:
    async with running("audit", database_url, f"127.0.0.1:{closed_port()}") as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")

    assert health.status_code == 200  # alive, just not ready
    assert ready.status_code == 503
    report = {check["name"]: check for check in ready.json()["checks"]}
    assert report["database"]["ok"] is True
    assert report["kafka"]["ok"] is False and report["kafka"]["detail"]
    assert ready.json()["status"] == "not ready"


async def test_the_request_id_is_echoed_or_made_up(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running("projections", database_url, kafka_bootstrap) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
        made_up = await client.get("/healthz")
        forged = await client.get(
            "/healthz", headers={"X-Request-ID": '0", "level": "critical'}
        )

    assert given.headers["x-request-id"] == "trace-me-42"
    assert len(made_up.headers["x-request-id"]) == 32
    assert forged.headers["x-request-id"] != '0", "level": "critical'


async def wait_for_health(port: int, process: asyncio.subprocess.Process) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.returncode is not None:
                raise AssertionError(f"the service exited with {process.returncode}")
            try:
                return await client.get(f"http://127.0.0.1:{port}/healthz")
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError("the service did not answer within a minute")


async def test_python_dash_m_serves_on_the_configured_port(
    database_url: str, kafka_bootstrap: str
) -> None:
    port = closed_port()
    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "HTTP_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.notifications", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        health = await wait_for_health(port, process)
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
    finally:
        process.terminate()
        output, _ = await process.communicate()

    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    lines = output.decode().splitlines()
    # uvicorn's own lines come out as JSON through the service's log set-up.
    assert any('"logger": "uvicorn.error"' in line and '"service": "notifications"' in line
               for line in lines), output.decode()
    # uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status.
    assert any("Application shutdown complete" in line for line in lines)


async def test_a_bad_configuration_stops_the_start_and_names_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "HTTP_PORT"}}
    env["HTTP_PORT"] = "eighty"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.identity", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await process.communicate()

    assert process.returncode == 2
    assert "HTTP_PORT" in errors.decode() and "DATABASE_URL" in errors.decode()
