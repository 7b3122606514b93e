"""The endpoints an orchestrator and a scraper use: /healthz, /readyz, /metrics."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from eventkit.http.readiness import ReadinessCheck, run_checks
from eventkit.metrics import METRICS_CONTENT_TYPE, render


class Health(BaseModel):
    status: str


class CheckReport(BaseModel):
    name: str
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: str
    checks: list[CheckReport]


def operations_router(
    *, readiness_checks: Sequence[ReadinessCheck], registry: CollectorRegistry
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        summary="Database, Kafka and consumers are in a state to serve",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A check failed"}},
    )
    async def readyz() -> JSONResponse:
        results = await run_checks(readiness_checks)
        ready = all(result.ok for result in results)
        report = Readiness(
            status="ready" if ready else "not ready",
            checks=[CheckReport(**result._asdict()) for result in results],
        )
        return JSONResponse(report.model_dump(), status_code=200 if ready else 503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(render(registry), media_type=METRICS_CONTENT_TYPE)

    return router
