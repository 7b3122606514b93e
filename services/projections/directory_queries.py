"""Reads of the user directory: filtered, sorted, keyset-paginated, personal data opened last.

``q`` searches e-mail and name, which the read model keeps sealed: rows that
pass the other filters are opened in order and matched in memory, at most
``SEARCH_SCAN_LIMIT`` per request; a page cut short by that limit says so
(``search_truncated``) and its cursor goes on from the last row looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from eventkit.personal_data import ERASED
from services.projections.directory import NAME, NIL
from services.projections.pages import Page, keyset_page
from services.projections.personal_data import Revealer
from services.projections.readmodels import Tables

Status = Literal["pending_confirmation", "active", "suspended", "deleted"]
Sort = Literal["registered_at", "-registered_at", "last_active_at", "-last_active_at"]
_SORT_COLUMNS = {"registered_at": "u.registered_at",
                 "last_active_at": "coalesce(u.last_sign_in_at, u.registered_at)"}


class CommunityRoleView(BaseModel):
    role: str
    community_id: UUID


class DirectoryUser(BaseModel):
    user_id: UUID
    email: str
    name: str | None
    locale: str
    status: Status
    registered_at: datetime
    confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    last_active_at: datetime
    suspended_until: datetime | None
    suspension_reason: str | None
    locked_until: datetime | None
    deletion_due_at: datetime | None
    deleted_at: datetime | None
    registration_route: Literal["public", "invitation"]
    via_invitation_id: UUID | None
    invited_by: UUID | None
    platform_roles: list[str]
    community_roles: list[CommunityRoleView]


@dataclass(frozen=True, slots=True)
class DirectoryFilter:
    status: Status | None = None
    role: str | None = None
    scope: Literal["platform", "community"] | None = None
    community_id: UUID | None = None
    q: str | None = None
    registered_from: datetime | None = None
    registered_to: datetime | None = None
    inactive_days: int | None = None


class _Query:
    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _where(t: Tables, wanted: DirectoryFilter, now: datetime) -> _Query:
    query = _Query()
    if wanted.status is not None:
        query.clauses.append(f"u.status = {query.arg(wanted.status)}")
    role_clauses = []
    if wanted.role is not None:
        role_clauses.append(f"r.role = {query.arg(wanted.role)}")
    if wanted.scope is not None:
        role_clauses.append(f"r.scope = {query.arg(wanted.scope)}")
    if wanted.community_id is not None:
        role_clauses.append(f"r.community_id = {query.arg(wanted.community_id)}")
    if role_clauses:
        query.clauses.append(f"EXISTS (SELECT 1 FROM {t['roles']} r WHERE r.user_id = u.user_id "
                             f"AND {' AND '.join(role_clauses)})")
    if wanted.registered_from is not None:
        query.clauses.append(f"u.registered_at >= {query.arg(wanted.registered_from)}")
    if wanted.registered_to is not None:
        query.clauses.append(f"u.registered_at < {query.arg(wanted.registered_to)}")
    if wanted.inactive_days is not None:
        since = now - timedelta(days=wanted.inactive_days)
        query.clauses.append(f"coalesce(u.last_sign_in_at, u.registered_at) < {query.arg(since)}")
    return query


async def find_users(
    pool: asyncpg.Pool[Any], version: int, wanted: DirectoryFilter, *, sort: Sort,
    after: dict[str, Any] | None, limit: int, revealer: Revealer, now: datetime,
    scan_limit: int,
) -> Page[DirectoryUser]:
    t = Tables(NAME, version)
    column = _SORT_COLUMNS[sort.lstrip("-")]
    order = "DESC" if sort.startswith("-") else "ASC"

    async def fetch(position: dict[str, Any] | None, count: int) -> list[asyncpg.Record]:
        query = _where(t, wanted, now)
        if position is not None:
            key = query.arg(datetime.fromisoformat(str(position["key"])))
            ident = query.arg(UUID(str(position["id"])))
            query.clauses.append(f"({column}, u.user_id) {'<' if order == 'DESC' else '>'} "
                                 f"({key}::timestamptz, {ident}::uuid)")
        where = f"WHERE {' AND '.join(query.clauses)}" if query.clauses else ""
        return list(await pool.fetch(
            f"SELECT u.*, {column} AS sort_key, i.inviter_id AS invited_by FROM {t['users']} u "
            f"LEFT JOIN {t['inviters']} i ON i.invitation_id = u.via_invitation_id {where} "
            f"ORDER BY {column} {order}, u.user_id {order} LIMIT {query.arg(count)}",
            *query.args))

    async def views(rows: list[asyncpg.Record]) -> list[DirectoryUser]:
        return await _views(pool, t, rows, revealer)

    def position_of(row: asyncpg.Record) -> dict[str, Any]:
        return {"sort": sort, "key": row["sort_key"].isoformat(), "id": str(row["user_id"])}

    needle = wanted.q.casefold() if wanted.q else None

    def matches(view: DirectoryUser) -> bool:
        assert needle is not None
        return needle in view.email.casefold() or needle in (view.name or "").casefold()

    return await keyset_page(fetch, views, position_of, after=after, limit=limit,
                             matches=matches if needle else None, scan_limit=scan_limit)


async def get_user(
    pool: asyncpg.Pool[Any], version: int, user_id: UUID, revealer: Revealer
) -> DirectoryUser | None:
    t = Tables(NAME, version)
    row = await pool.fetchrow(
        f"SELECT u.*, coalesce(u.last_sign_in_at, u.registered_at) AS sort_key, "
        f"i.inviter_id AS invited_by FROM {t['users']} u LEFT JOIN {t['inviters']} i "
        "ON i.invitation_id = u.via_invitation_id WHERE user_id = $1", user_id)
    if row is None:
        return None
    [view] = await _views(pool, t, [row], revealer)
    return view


def revealed_fields(view: DirectoryUser) -> tuple[str, ...]:
    """Which personal fields of ``view`` were shown in clear (none once erased)."""
    return tuple(name for name, value in (("email", view.email), ("name", view.name))
                 if value is not None and value != ERASED)


async def _views(
    pool: asyncpg.Pool[Any], t: Tables, rows: list[asyncpg.Record], revealer: Revealer
) -> list[DirectoryUser]:
    if not rows:
        return []
    ids = [row["user_id"] for row in rows]
    roles: dict[UUID, list[asyncpg.Record]] = {}
    for role in await pool.fetch(
        f"SELECT user_id, role, scope, community_id FROM {t['roles']} WHERE user_id = ANY($1) "
        "ORDER BY role, community_id", ids):
        roles.setdefault(role["user_id"], []).append(role)
    emails = await revealer.reveal_many([row["email"] for row in rows], owner="identity")
    names = await revealer.reveal_many([row["name"] for row in rows], owner="identity")
    views = []
    for row, email, name in zip(rows, emails, names, strict=True):
        held = roles.get(row["user_id"], [])
        views.append(DirectoryUser(
            user_id=row["user_id"], email=email,
            name=None if row["name"] is None and row["status"] != "deleted" else name,
            locale=row["locale"], status=row["status"], registered_at=row["registered_at"],
            confirmed_at=row["confirmed_at"], last_sign_in_at=row["last_sign_in_at"],
            last_active_at=row["last_sign_in_at"] or row["registered_at"],
            suspended_until=row["suspended_until"], suspension_reason=row["suspension_reason"],
            locked_until=row["locked_until"], deletion_due_at=row["deletion_due_at"],
            deleted_at=row["deleted_at"],
            registration_route="invitation" if row["via_invitation_id"] else "public",
            via_invitation_id=row["via_invitation_id"], invited_by=row["invited_by"],
            platform_roles=[r["role"] for r in held if r["scope"] == "platform"],
            community_roles=[CommunityRoleView(role=r["role"], community_id=r["community_id"])
                             for r in held if r["scope"] == "community"
                             and str(r["community_id"]) != NIL],
        ))
    return views
