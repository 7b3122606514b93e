"""The audit service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from eventkit.http.app import create_service_app
from eventkit.migrations import apply_migrations
from eventkit.runtime import ServiceRuntime
from services.audit.api import build_router
from services.audit.consumers import log_subscription
from services.audit.settings import AuditSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_app(settings: AuditSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings, migrations=[MIGRATIONS], subscriptions=[log_subscription(settings)]
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        admin_dsn = settings.admin_database_dsn
        if admin_dsn is not None:
            # The owner migrates; the service's own role could not create tables.
            await apply_migrations(admin_dsn, MIGRATIONS)
        async with runtime.lifespan(app):
            yield

    return create_service_app(
        settings,
        routers=[build_router()],
        readiness_checks=runtime.readiness_checks(),
        lifespan=lifespan,
        registry=runtime.registry,
    )
