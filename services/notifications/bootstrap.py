"""The notifications service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import structlog
from fastapi import FastAPI

from eventkit.http.app import create_service_app
from eventkit.kafka_client import KafkaMessageSink
from eventkit.personal_data import KeyOwners
from eventkit.runtime import ServiceRuntime, Subscription
from eventkit.store import Clock, utc_now
from schemas.catalog import build_registry
from services.notifications.api import build_router
from services.notifications.consumers import MailDecisions
from services.notifications.delivery import GROUP, Sender
from services.notifications.mailer import Mailer, SmtpMailer
from services.notifications.personal_data import PersonalDataReader
from services.notifications.queries import DeliveryLog
from services.notifications.rendering import Renderer
from services.notifications.settings import NotificationsSettings

MIGRATIONS = Path(__file__).with_name("migrations")
log = structlog.get_logger(__name__)


def _mailer(settings: NotificationsSettings) -> SmtpMailer:
    password = settings.smtp_password
    return SmtpMailer(
        host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
        username=settings.smtp_username,
        password=None if password is None else password.get_secret_value(),
        timeout=settings.smtp_timeout,
    )


async def _consumers_joined(runtime: ServiceRuntime, *, within: float) -> None:
    """Start serving once the consumers joined their groups, or after ``within`` s anyway.

    A replica that answers before it reads would be "ready" without being so;
    Kafka being away only delays the start, /readyz then says what is missing.
    """
    checks = [check for check in runtime.readiness_checks()
              if getattr(check, "name", "").startswith("consumer ")]  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        results = [await check() for check in checks]
        if all(result.ok for result in results):
            return
        await asyncio.sleep(0.1)
    log.warning("serving before every consumer joined its group", waited=within)


def build_app(
    settings: NotificationsSettings,
    *,
    personal_data: PersonalDataReader | None = None,
    mailer: Mailer | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """The service; tests pass their own key access, mailer or clock, nothing else differs."""
    registry = build_registry()
    renderer = Renderer()
    decisions = MailDecisions(registry=registry, message_id_domain=settings.message_id_domain,
                              clock=clock)
    runtime = ServiceRuntime(
        settings,
        migrations=[MIGRATIONS],
        revocations_topic=settings.user_topic,
        subscriptions=[Subscription(
            group=GROUP, handler=decisions,
            # A pattern, not a list: a topic that does not exist yet (a stack still being
            # created) is picked up when it appears instead of stalling the consumer.
            pattern="^(" + "|".join(re.escape(topic) for topic in (
                settings.user_topic, settings.platform_topic, settings.invitation_topic)) + ")$",
        )],
    )  # fmt: skip
    delivery_log = DeliveryLog(renderer=renderer, contact_email=settings.contact_email)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app), httpx.AsyncClient(timeout=10.0) as keys_client:
            keys = personal_data or KeyOwners.from_settings(
                settings, client=keys_client, purpose="notification_delivery")
            sender = Sender(
                pool=runtime.database.pool, store=runtime.store, registry=registry,
                renderer=renderer, mailer=mailer or _mailer(settings),
                personal_data=keys,
                dead_letters=KafkaMessageSink(settings.kafka_bootstrap,
                                              client_id=f"{GROUP}.delivery"),
                mail_from=settings.mail_from, contact_email=settings.contact_email,
                invitation_url_base=settings.invitation_url_base,
                identity_public_url=settings.identity_public_url,
                recipient_hash_key=settings.recipient_hash_key.get_secret_value().encode(),
                attempts=settings.delivery_attempts, base_delay=settings.retry_base_delay,
                max_delay=settings.retry_max_delay, lease=settings.send_lease,
                batch=settings.delivery_batch, clock=clock,
            )  # fmt: skip
            delivery_log.open(runtime.database.pool, keys)
            stopping = asyncio.Event()
            task = asyncio.create_task(
                sender.run(stopping, interval=settings.delivery_poll_interval), name="sender"
            )
            await _consumers_joined(runtime, within=settings.startup_consumer_wait)
            try:
                yield
            finally:
                stopping.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=30.0)
                await sender.close()
                delivery_log.close()

    app = create_service_app(
        settings,
        routers=[build_router(delivery_log)],
        readiness_checks=runtime.readiness_checks(),
        lifespan=lifespan,
        runtime=runtime,
    )
    app.state.runtime = runtime
    return app
