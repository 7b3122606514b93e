"""Operators' routes over each read model's failed events: the list, and a retry of one."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from eventkit.http.auth import Principal, require_permission
from eventkit.http.problems import CONFLICT, NOT_FOUND, Problem
from services.projections import failed_events, readmodels
from services.projections.api import Context, Cursor, Limit, ReadModelName
from services.projections.context import ProjectionsContext
from services.projections.failed_events import EventNotKept, FailedEvent, RetryFailed, RetryOutcome
from services.projections.pages import decode_cursor
from services.projections.problems import invalid
from services.projections.readmodels import ReadModel

Monitor = Annotated[Principal, Depends(require_permission("view_platform_logs"))]
# Applying an event again changes what dashboards show: an operator's act, not a reader's.
Operator = Annotated[Principal, Depends(require_permission("manage_platform_settings"))]
Version = Annotated[int | None, Query(ge=1, le=1_000_000,
                                      description="Default: the version that serves reads.")]


class FailedEventsPage(BaseModel):
    read_model: str
    version: int
    items: list[FailedEvent]
    next_cursor: str | None


async def _located(
    context: ProjectionsContext, name: str, version: int | None
) -> tuple[ReadModel, int]:
    model = context.projector.models[name]
    pool = context.runtime.store.pool
    version = version or await readmodels.active_version(pool, name)
    if not await failed_events.table_exists(pool, model, version):
        raise Problem(type_=NOT_FOUND, detail=f"read model {name} has no version {version}")
    return model, version


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1/projections", tags=["projections"])

    @router.get("/{name}/failed-events",
                summary="Events the read model set aside because it could not apply them")
    async def list_failed(
        context: Context, _monitor: Monitor, name: ReadModelName, version: Version = None,
        cursor: Cursor = None, limit: Limit = 50,
    ) -> FailedEventsPage:
        after = decode_cursor(cursor, sort=failed_events.SORT)
        model, version = await _located(context, name, version)
        try:
            page = await failed_events.find(context.runtime.store.pool, model, version,
                                            after=after, limit=limit)
        except (ValueError, KeyError) as error:
            raise invalid("cursor", "not a cursor from a previous page") from error
        return FailedEventsPage(read_model=name, version=version, items=page.items,
                                next_cursor=page.next_cursor)

    @router.post("/{name}/failed-events/{event_id}/retry",
                 summary="Apply a failed event again; once applied it leaves the list",
                 responses={404: {"description": "Not (or no longer) a failed event"},
                            409: {"description": "It still cannot be applied"}})
    async def retry_failed(
        context: Context, _operator: Operator, name: ReadModelName, event_id: UUID,
        version: Version = None,
    ) -> RetryOutcome:
        model, version = await _located(context, name, version)
        try:
            outcome = await failed_events.retry(context.runtime.store.pool, model, version,
                                                event_id, context.projector.registry)
        except RetryFailed as failure:
            raise Problem(type_=CONFLICT, detail="the event still cannot be applied",
                          error=failure.error) from failure
        except EventNotKept as error:
            raise Problem(type_=CONFLICT, detail="this event was set aside before failed "
                          "events kept their message: rebuild the read model instead") from error
        if outcome is None:
            raise Problem(type_=NOT_FOUND,
                          detail=f"event {event_id} is not a failed event of {name} v{version}")
        return outcome

    return router
