"""``create_service_app``: the FastAPI app every service is, before its own routes.

It owns what is the same in each service: problem details, request ids,
metrics, tracing, CORS, bearer-token verification, idempotency keys, and
the operational endpoints. A service's composition root passes its routers,
its readiness checks and its lifespan (pool, relay, consumers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from eventkit.http.auth import JwksKeySet, RevokedSessions, TokenVerifier
from eventkit.http.idempotency import IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER, IdempotencyStore
from eventkit.http.openapi import declare_problems
from eventkit.http.operations import operations_router
from eventkit.http.problems import install_problem_handlers
from eventkit.http.readiness import ReadinessCheck
from eventkit.http.request_id import REQUEST_ID_HEADER, RequestIdMiddleware
from eventkit.logging import configure_logging
from eventkit.metrics import HttpMetrics, HttpMetricsMiddleware, create_registry
from eventkit.runtime import ServiceRuntime
from eventkit.settings import OtelExporter, ServiceSettings
from eventkit.telemetry import create_tracer_provider, install_tracing, shutdown_tracing

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# Bounded so a hung identity cannot hold a request for long.
_JWKS_TIMEOUT = httpx.Timeout(5.0)


def _package_version() -> str:
    try:
        return version("guestlist")
    except PackageNotFoundError:
        return "0+unknown"


def create_service_app(
    settings: ServiceSettings,
    *,
    routers: Iterable[APIRouter] = (),
    readiness_checks: Iterable[ReadinessCheck] = (),
    lifespan: Lifespan | None = None,
    runtime: ServiceRuntime | None = None,
    registry: CollectorRegistry | None = None,
    expose_headers: Iterable[str] = (),
) -> FastAPI:
    """Build the app; nothing opens (pool, HTTP client use) until its lifespan starts.

    A service passes its ``runtime``: tokens are then checked against the
    sessions its revocation consumer ends, and metrics share its registry.
    Without one (tests of the HTTP side alone) nothing revokes sessions.
    ``expose_headers`` are response headers of the service's own that
    browsers on the CORS origins may read.
    """
    configure_logging(
        service=settings.service_name, level=settings.log_level, fmt=settings.log_format
    )
    tracer_provider = create_tracer_provider(settings)
    if registry is None:
        registry = runtime.registry if runtime is not None else create_registry()
    jwks_client = httpx.AsyncClient(timeout=_JWKS_TIMEOUT)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            await jwks_client.aclose()
            await shutdown_tracing(tracer_provider)

    app = FastAPI(
        title=f"Guestlist {settings.service_name}",
        version=_package_version(),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=app_lifespan,
    )
    revoked = runtime.revoked_sessions if runtime is not None else RevokedSessions()
    keys = JwksKeySet(
        settings.identity_jwks_url,
        client=jwks_client,
        cache_seconds=settings.jwks_cache_seconds,
        refetch_interval_seconds=settings.jwks_refetch_interval_seconds,
    )
    app.state.settings = settings
    app.state.revoked_sessions = revoked
    app.state.token_verifier = TokenVerifier(
        keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience, revoked=revoked
    )
    app.state.idempotency = IdempotencyStore(ttl=settings.idempotency_ttl)
    app.state.metrics_registry = registry

    # Added innermost first: a 500 made from an unhandled error is still counted,
    # carries the request id, and gets CORS headers.
    install_problem_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER, REPLAYED_HEADER, IDEMPOTENCY_KEY_HEADER,
                            "Location", *expose_headers],
        )

    app.include_router(
        operations_router(readiness_checks=tuple(readiness_checks), registry=registry)
    )
    for router in routers:
        app.include_router(router)
    install_tracing(app, tracer_provider,
                    trace_queries=settings.otel_exporter is not OtelExporter.NONE)
    declare_problems(app)
    return app
