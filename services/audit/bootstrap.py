"""The audit service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from eventkit.database import ServiceDatabase
from eventkit.http.app import create_service_app
from eventkit.http.readiness import KafkaCheck
from services.audit.api import build_router
from services.audit.settings import AuditSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_app(settings: AuditSettings) -> FastAPI:
    database = ServiceDatabase(
        settings.database_url, application_name="guestlist-audit", migrations=[MIGRATIONS]
    )
    return create_service_app(
        settings,
        routers=[build_router()],
        readiness_checks=[database.readiness_check(), KafkaCheck(settings.kafka_bootstrap)],
        lifespan=database.lifespan,
    )
