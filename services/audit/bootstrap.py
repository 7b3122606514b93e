"""The audit service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from eventkit.http.app import create_service_app
from eventkit.runtime import ServiceRuntime
from services.audit.api import build_router
from services.audit.settings import AuditSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_app(settings: AuditSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS])
    return create_service_app(
        settings,
        routers=[build_router()],
        readiness_checks=runtime.readiness_checks(),
        lifespan=runtime.lifespan,
        registry=runtime.registry,
    )
