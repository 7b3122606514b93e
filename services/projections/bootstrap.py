"""The projections service's composition root: everything it runs on, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from eventkit.http.app import create_service_app
from eventkit.personal_data import KeyOwners, KeyResolver
from eventkit.position import PositionWaits
from eventkit.runtime import ServiceRuntime
from schemas.catalog import build_registry
from services.projections import directory, failed_events_api, invitation_board, security_monitor
from services.projections.api import build_router
from services.projections.consistency import EXPOSED_HEADERS
from services.projections.context import ProjectionsContext
from services.projections.live import LiveChanges
from services.projections.personal_data import Revealer
from services.projections.projector import ProjectionMetrics, Projector
from services.projections.readmodels import ReadModel
from services.projections.settings import ProjectionsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def read_models(settings: ProjectionsSettings) -> tuple[ReadModel, ...]:
    return (directory.READ_MODEL, invitation_board.READ_MODEL, security_monitor.read_model(
        takeover_failures=settings.takeover_failures,
        takeover_window=timedelta(seconds=settings.takeover_window_seconds)))


def topics_of(settings: ProjectionsSettings) -> tuple[str, ...]:
    # Every read model reads every domain topic, so any command's position can be awaited.
    return (settings.user_topic, settings.platform_topic, settings.invitation_topic,
            settings.delivery_topic)


def build_app(
    settings: ProjectionsSettings, *, keys: Mapping[str, KeyResolver] | None = None
) -> FastAPI:
    """The service; tests pass their own key resolvers (identity, invitations)."""
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS],
                             revocations_topic=settings.user_topic)
    projector = Projector(
        models=read_models(settings), topics=topics_of(settings),
        bootstrap=settings.kafka_bootstrap,
        group_prefix=settings.projections_group_prefix, registry=build_registry(),
        metrics=ProjectionMetrics(runtime.registry), poll_seconds=settings.version_poll_seconds,
        max_lag=settings.readiness_max_lag,
    )
    key_client = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    waits = PositionWaits(lambda: runtime.store)

    def changed(change: dict[str, Any]) -> None:
        # The payload names the read model and version: only reads waiting on it are asked.
        try:
            waits.changed(projector.group(str(change["read_model"]), int(change["version"])))
        except (KeyError, TypeError, ValueError):
            waits.changed()

    live = LiveChanges(on_change=changed)
    owners = (KeyOwners(keys) if keys is not None else
              KeyOwners.from_settings(settings, client=key_client, purpose="dashboard_read_model"))
    context = ProjectionsContext(
        settings=settings, runtime=runtime, projector=projector, live=live, waits=waits,
        revealer=Revealer(owners),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            await live.start(settings.database_dsn)
            stopping = asyncio.Event()
            projecting = asyncio.create_task(projector.run(runtime.store, stopping),
                                             name="projector")
            try:
                yield
            finally:
                stopping.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(projecting, timeout=60.0)
                await live.stop()
                await key_client.aclose()

    app = create_service_app(
        settings,
        routers=[build_router(), failed_events_api.build_router()],
        readiness_checks=[*runtime.readiness_checks(), *projector.readiness_checks()],
        lifespan=lifespan,
        runtime=runtime,
        expose_headers=EXPOSED_HEADERS,
    )
    app.state.projections = context
    app.state.runtime = runtime
    return app
