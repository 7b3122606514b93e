"""The audit service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from eventkit.http.app import create_service_app
from eventkit.migrations import apply_migrations
from eventkit.personal_data import KeyResolver, owners_over_http
from eventkit.postgres_store import PostgresTransaction
from eventkit.runtime import ServiceRuntime
from eventkit.store import utc_now
from services.audit import checkpoints, replay
from services.audit.api import AuditContext, build_router
from services.audit.checkpoints import CheckpointSigner
from services.audit.consumers import log_subscription
from services.audit.domain import ChainedEntry
from services.audit.settings import AuditSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_app(settings: AuditSettings, *, keys: KeyResolver | None = None) -> FastAPI:
    signer = CheckpointSigner.from_file(settings.audit_signing_key_file)

    async def sign_due(tx: PostgresTransaction, appended: Sequence[ChainedEntry]) -> None:
        await checkpoints.sign_due(tx.connection, signer, appended,
                                   every=settings.audit_checkpoint_every, at=utc_now())

    runtime = ServiceRuntime(
        settings, migrations=[MIGRATIONS],
        subscriptions=[log_subscription(settings, on_appended=sign_due)],
    )
    key_client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    if keys is None:
        # The log holds every service's events: values are opened by whichever owner has the key.
        keys = owners_over_http(
            identity_url=settings.audit_identity_url,
            invitations_url=settings.audit_invitations_url,
            client_id=settings.audit_service_client_id,
            secret=settings.audit_service_client_secret,
            client=key_client, purpose="audit_timeline",
        )

    replays = replay.ReplayRunner(lambda: runtime.store.pool, settings.kafka_bootstrap)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        admin_dsn = settings.admin_database_dsn
        if admin_dsn is not None:
            # The owner migrates; the service's own role could not create tables.
            await apply_migrations(admin_dsn, MIGRATIONS)
        async with runtime.lifespan(app):
            stopping = asyncio.Event()
            signing = asyncio.create_task(checkpoints.sign_periodically(
                runtime.store.pool, signer,
                interval=settings.audit_checkpoint_interval_seconds, stopping=stopping,
            ), name="checkpoints")
            await replays.resume()  # replays a restart cut off go on where they stopped
            try:
                yield
            finally:
                stopping.set()
                await replays.stop()
                await signing
                await key_client.aclose()

    app = create_service_app(
        settings,
        routers=[build_router()],
        readiness_checks=runtime.readiness_checks(),
        lifespan=lifespan,
        runtime=runtime,
    )
    app.state.audit = AuditContext(settings=settings, runtime=runtime, signer=signer, keys=keys,
                                   replays=replays)
    return app
