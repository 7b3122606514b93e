"""The invitations service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from eventkit.database import ServiceDatabase
from eventkit.http.app import create_service_app
from eventkit.http.readiness import KafkaCheck
from services.invitations.api import build_router
from services.invitations.settings import InvitationsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_app(settings: InvitationsSettings) -> FastAPI:
    database = ServiceDatabase(
        settings.database_url, application_name="guestlist-invitations", migrations=[MIGRATIONS]
    )
    return create_service_app(
        settings,
        routers=[build_router()],
        readiness_checks=[database.readiness_check(), KafkaCheck(settings.kafka_bootstrap)],
        lifespan=database.lifespan,
    )
