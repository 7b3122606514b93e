"""The projections service's HTTP routes, under /v1: thin, each parses, reads and records access."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel

from eventkit.http.auth import CurrentPrincipal, Principal, require_permission
from eventkit.http.problems import NOT_FOUND, Problem
from eventkit.personal_data import KeyUnavailable
from schemas.roles import Role
from services.projections import (
    analytics,
    directory,
    directory_queries,
    invitation_board,
    invitation_queries,
    security_monitor,
    security_queries,
)
from services.projections.access import record_viewed
from services.projections.analytics import Bucket, InvitationAnalytics, RegistrationBucket
from services.projections.consistency import Consistency, consistent_read
from services.projections.context import ProjectionsContext, context_of
from services.projections.directory_queries import DirectoryFilter, DirectoryUser, Sort, Status
from services.projections.invitation_queries import (
    InvitationFilter,
    InvitationSort,
    InvitationStatus,
    InvitationView,
)
from services.projections.pages import decode_cursor
from services.projections.problems import invalid, keys_unavailable
from services.projections.security_queries import Kind, SecurityEvent, SecuritySummary


async def _context(request: Request) -> ProjectionsContext:
    """``context_of`` as a dependency; ``async``, so FastAPI runs it without a worker thread."""
    return context_of(request)


Context = Annotated[ProjectionsContext, Depends(_context)]
Lister = Annotated[Principal, Depends(require_permission("list_person"))]
Reader = Annotated[Principal, Depends(require_permission("read_person"))]
Limit = Annotated[int, Query(ge=1, le=200, description="At most this many items.")]
Cursor = Annotated[str | None, Query(max_length=500, description="From the previous page.")]
DirectoryConsistency = Annotated[Consistency, Depends(consistent_read(directory.NAME))]
BoardConsistency = Annotated[Consistency, Depends(consistent_read(invitation_board.NAME))]
InvitationManager = Annotated[Principal, Depends(require_permission("manage_invitations"))]
Analyst = Annotated[Principal, Depends(require_permission("view_platform_analytics"))]
From = Annotated[AwareDatetime | None, Query(alias="from", description="Default: 30 days ago.")]
To = Annotated[AwareDatetime | None, Query(alias="to", description="Default: now.")]
BucketQuery = Annotated[Bucket, Query(description="UTC days, ISO weeks or months.")]
SecurityConsistency = Annotated[Consistency, Depends(consistent_read(security_monitor.NAME))]
Monitor = Annotated[Principal, Depends(require_permission("view_platform_logs"))]
DEFAULT_PERIOD = timedelta(days=30)
ReadModelName = Literal["directory", "invitations", "security"]


class DirectoryPageView(BaseModel):
    items: list[DirectoryUser]
    next_cursor: str | None
    search_truncated: bool
    consistency: Consistency


class DirectoryUserView(BaseModel):
    user: DirectoryUser
    consistency: Consistency


class InvitationPageView(BaseModel):
    items: list[InvitationView]
    next_cursor: str | None
    search_truncated: bool
    consistency: Consistency


class InvitationAnalyticsView(InvitationAnalytics):
    start: datetime
    end: datetime
    bucket: Bucket
    consistency: Consistency


class RegistrationsView(BaseModel):
    start: datetime
    end: datetime
    bucket: Bucket
    buckets: list[RegistrationBucket]
    consistency: Consistency


class SecuritySummaryView(SecuritySummary):
    consistency: Consistency


class SecurityEventsView(BaseModel):
    items: list[SecurityEvent]
    next_cursor: str | None
    consistency: Consistency


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_PERIOD
    _period(start, end, ("from", "to"))
    return start, end


def _period(start: datetime | None, end: datetime | None, names: tuple[str, str]) -> None:
    if start is not None and end is not None and end <= start:
        raise invalid(names[1], f"must be after {names[0]}")


async def _shown(
    context: ProjectionsContext, principal: Principal, views: list[DirectoryUser], endpoint: str
) -> None:
    by_fields: dict[tuple[str, ...], list[UUID]] = {}
    for view in views:
        fields = directory_queries.revealed_fields(view)
        if fields:
            by_fields.setdefault(fields, []).append(view.user_id)
    for fields, subjects in by_fields.items():
        await record_viewed(context.runtime.store, topic=context.settings.access_topic,
                            principal=principal, subjects=subjects, fields=fields,
                            endpoint=endpoint, purpose="user_directory")


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["projections"])

    @router.get("/directory/users", summary="People, filtered and sorted; personal data audited")
    async def list_users(
        context: Context,
        principal: Lister,
        consistency: DirectoryConsistency,
        status: Annotated[Status | None, Query()] = None,
        role: Annotated[Role | None, Query()] = None,
        scope: Annotated[Literal["platform", "community"] | None, Query()] = None,
        community_id: Annotated[UUID | None, Query()] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        registered_from: Annotated[AwareDatetime | None, Query()] = None,
        registered_to: Annotated[AwareDatetime | None, Query()] = None,
        inactive_days: Annotated[int | None, Query(ge=0, le=36500)] = None,
        sort: Annotated[Sort, Query()] = "-registered_at",
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> DirectoryPageView:
        _period(registered_from, registered_to, ("registered_from", "registered_to"))
        after = decode_cursor(cursor, sort=sort)
        wanted = DirectoryFilter(status=status, role=role, scope=scope, community_id=community_id,
                                 q=q, registered_from=registered_from,
                                 registered_to=registered_to, inactive_days=inactive_days)
        try:
            page = await directory_queries.find_users(
                context.runtime.store.pool, consistency.version, wanted, sort=sort, after=after,
                limit=limit, revealer=context.revealer, now=datetime.now(UTC),
                scan_limit=context.settings.search_scan_limit)
        except (ValueError, KeyError) as error:
            raise invalid("cursor", "not a cursor from a previous page") from error
        except KeyUnavailable as error:
            raise keys_unavailable() from error
        await _shown(context, principal, page.items, "GET /v1/directory/users")
        return DirectoryPageView(items=page.items, next_cursor=page.next_cursor,
                                 search_truncated=page.search_truncated, consistency=consistency)

    @router.get("/directory/users/{user_id}", summary="One person; personal data audited")
    async def get_user(
        context: Context, principal: Reader, consistency: DirectoryConsistency, user_id: UUID,
    ) -> DirectoryUserView:
        try:
            view = await directory_queries.get_user(context.runtime.store.pool,
                                                    consistency.version, user_id,
                                                    context.revealer)
        except KeyUnavailable as error:
            raise keys_unavailable() from error
        if view is None:
            raise Problem(type_=NOT_FOUND, detail=f"no person {user_id} in the directory")
        await _shown(context, principal, [view], "GET /v1/directory/users/{user_id}")
        return DirectoryUserView(user=view, consistency=consistency)

    @router.get("/invitations", summary="The invitation board; invitee e-mails audited")
    async def list_invitations(
        context: Context,
        principal: InvitationManager,
        consistency: BoardConsistency,
        status: Annotated[InvitationStatus | None, Query()] = None,
        inviter: Annotated[UUID | None, Query()] = None,
        role: Annotated[Role | None, Query()] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        valid_until_before: Annotated[AwareDatetime | None, Query()] = None,
        sort: Annotated[InvitationSort, Query()] = "-created_at",
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> InvitationPageView:
        after = decode_cursor(cursor, sort=sort)
        wanted = InvitationFilter(status=status, inviter=inviter, role=role, q=q,
                                  valid_until_before=valid_until_before)
        try:
            page = await invitation_queries.find_invitations(
                context.runtime.store.pool, consistency.version, wanted, sort=sort, after=after,
                limit=limit, revealer=context.revealer,
                scan_limit=context.settings.search_scan_limit)
        except (ValueError, KeyError) as error:
            raise invalid("cursor", "not a cursor from a previous page") from error
        except KeyUnavailable as error:
            raise keys_unavailable() from error
        await record_viewed(context.runtime.store, topic=context.settings.access_topic,
                            principal=principal,
                            subjects=invitation_queries.shown_subjects(page.items),
                            fields=("invitee_email",), endpoint="GET /v1/invitations",
                            purpose="invitation_board")
        return InvitationPageView(items=page.items, next_cursor=page.next_cursor,
                                  search_truncated=page.search_truncated, consistency=consistency)

    @router.get("/analytics/invitations",
                summary="Acceptance, inviters' success, expirations, role consistency")
    async def invitation_analytics(
        context: Context, _analyst: Analyst, consistency: BoardConsistency,
        start: From = None, end: To = None, bucket: BucketQuery = "week",
    ) -> InvitationAnalyticsView:
        start, end = _window(start, end)
        figures = await analytics.invitation_analytics(
            context.runtime.store.pool, consistency.version, start=start, end=end, bucket=bucket)
        return InvitationAnalyticsView(**figures.model_dump(), start=start, end=end,
                                       bucket=bucket, consistency=consistency)

    @router.get("/analytics/registrations",
                summary="Registrations over time, by current status and by route")
    async def registrations(
        context: Context, _analyst: Analyst, consistency: DirectoryConsistency,
        start: From = None, end: To = None, bucket: BucketQuery = "week",
    ) -> RegistrationsView:
        start, end = _window(start, end)
        buckets = await analytics.registrations(
            context.runtime.store.pool, consistency.version, start=start, end=end, bucket=bucket)
        return RegistrationsView(start=start, end=end, bucket=bucket, buckets=buckets,
                                 consistency=consistency)

    @router.get("/security/summary",
                summary="Failed sign-ins per account and per client, lockouts, takeovers, "
                "escalations, in the window ending at `at`")
    async def security_summary(
        context: Context, _monitor: Monitor, consistency: SecurityConsistency,
        window_seconds: Annotated[int, Query(ge=1, le=90 * 86400)] = 3600,
        at: Annotated[AwareDatetime | None, Query(description="Default: now.")] = None,
        top: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> SecuritySummaryView:
        found = await security_queries.summary(
            context.runtime.store.pool, consistency.version, at=at or datetime.now(UTC),
            window=timedelta(seconds=window_seconds), top=top)
        return SecuritySummaryView(**found.model_dump(), consistency=consistency)

    @router.get("/security/events", summary="Security events, newest first")
    async def security_events(
        context: Context, _monitor: Monitor, consistency: SecurityConsistency,
        kind: Annotated[Kind | None, Query()] = None,
        user_id: Annotated[UUID | None, Query()] = None,
        client_address_hash: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
        start: From = None, end: To = None, cursor: Cursor = None, limit: Limit = 50,
    ) -> SecurityEventsView:
        _period(start, end, ("from", "to"))
        after = decode_cursor(cursor, sort="-occurred_at")
        try:
            page = await security_queries.find_events(
                context.runtime.store.pool, consistency.version, kind=kind, user_id=user_id,
                client_address_hash=client_address_hash, start=start, end=end, after=after,
                limit=limit)
        except (ValueError, KeyError) as error:
            raise invalid("cursor", "not a cursor from a previous page") from error
        return SecurityEventsView(items=page.items, next_cursor=page.next_cursor,
                                  consistency=consistency)

    @router.get("/stream", response_class=StreamingResponse,
                summary="Server-Sent Events: one `change` per batch a read model applied",
                responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(
        request: Request, context: Context, _principal: CurrentPrincipal,
        read_model: Annotated[list[ReadModelName] | None, Query(
            description="Only these read models (repeat the parameter); default all.")] = None,
        heartbeat_seconds: Annotated[float, Query(ge=1, le=300)] = 15.0,
    ) -> StreamingResponse:
        wanted = set(read_model or ("directory", "invitations", "security"))

        async def changes() -> AsyncIterator[str]:
            async with context.live.subscribe() as queue:
                yield ": listening\n\n"
                while not await request.is_disconnected():
                    try:
                        change = await asyncio.wait_for(queue.get(), timeout=heartbeat_seconds)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if change.get("read_model") in wanted:
                        yield (f"event: change\nid: {change.get('position', '')}\n"
                               f"data: {json.dumps(change)}\n\n")

        return StreamingResponse(changes(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return router
