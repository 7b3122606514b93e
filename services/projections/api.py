"""The projections service's HTTP routes, under /v1: thin, each parses, reads and records access."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel

from eventkit.http.auth import Principal, require_permission
from eventkit.http.problems import NOT_FOUND, Problem
from eventkit.personal_data import KeyUnavailable
from schemas.roles import Role
from services.projections import directory, directory_queries
from services.projections.access import record_viewed
from services.projections.consistency import Consistency, consistent_read
from services.projections.context import ProjectionsContext, context_of
from services.projections.directory_queries import DirectoryFilter, DirectoryUser, Sort, Status
from services.projections.pages import decode_cursor
from services.projections.problems import invalid, keys_unavailable

Context = Annotated[ProjectionsContext, Depends(context_of)]
Lister = Annotated[Principal, Depends(require_permission("list_person"))]
Reader = Annotated[Principal, Depends(require_permission("read_person"))]
Limit = Annotated[int, Query(ge=1, le=200, description="At most this many items.")]
Cursor = Annotated[str | None, Query(max_length=500, description="From the previous page.")]
DirectoryConsistency = Annotated[Consistency, Depends(consistent_read(directory.NAME))]


class DirectoryPageView(BaseModel):
    items: list[DirectoryUser]
    next_cursor: str | None
    search_truncated: bool
    consistency: Consistency


class DirectoryUserView(BaseModel):
    user: DirectoryUser
    consistency: Consistency


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

    return router
