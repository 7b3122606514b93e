"""The invitations service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from eventkit.envelope import Envelope
from eventkit.http.app import create_service_app
from eventkit.logging import get_logger
from eventkit.runtime import ServiceRuntime, Subscription
from eventkit.store import Clock, Transaction, utc_now
from schemas.catalog import build_registry
from services.invitations.api import build_router
from services.invitations.consistency import EXPOSED_HEADERS
from services.invitations.consumers import InvitationReactions
from services.invitations.runtime import InvitationsService
from services.invitations.settings import InvitationsSettings

MIGRATIONS = Path(__file__).with_name("migrations")
# The consumer group is named after the service (docs/DESIGN.md, "Consumer groups").
CONSUMER_GROUP = "invitations"


def build_service(
    settings: InvitationsSettings, *, clock: Clock = utc_now
) -> tuple[InvitationsService, ServiceRuntime]:
    registry = build_registry()
    # The runtime's subscription handler needs the handlers, which need the runtime's
    # store: the reactions reach the handlers through the service object built next.
    holder: list[InvitationsService] = []

    async def react(envelope: Envelope, tx: Transaction) -> None:
        await InvitationReactions(holder[0].handlers, registry)(envelope, tx)

    runtime = ServiceRuntime(
        settings,
        migrations=[MIGRATIONS],
        subscriptions=[
            Subscription(
                group=CONSUMER_GROUP, handler=react,
                topics=[settings.user_topic, settings.delivery_topic, settings.platform_topic],
            )
        ],
        revocations_topic=settings.user_topic,
    )
    service = InvitationsService(settings, runtime, registry=registry, clock=clock,
                                 consumer_group=CONSUMER_GROUP,
                                 revoked_sessions=runtime.revoked_sessions)
    holder.append(service)
    return service, runtime


def build_app(settings: InvitationsSettings, *, clock: Clock = utc_now) -> FastAPI:
    if settings.uses_dev_secret:
        get_logger(__name__).warning("INVITATIONS_SECRET is the local development default")
    service, runtime = build_service(settings, clock=clock)
    app = create_service_app(
        settings,
        routers=[build_router()],
        readiness_checks=runtime.readiness_checks(),
        lifespan=service.lifespan,
        runtime=runtime,
        expose_headers=EXPOSED_HEADERS,
    )
    app.state.invitations = service
    return app
