"""Reads of the invitation board: filtered, sorted, keyset-paginated; invitee e-mail opened last."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from eventkit.personal_data import ERASED
from services.projections.invitation_board import NAME
from services.projections.pages import Page, keyset_page
from services.projections.personal_data import Revealer
from services.projections.readmodels import Tables

InvitationStatus = Literal["pending", "accepted", "expired", "revoked"]
InvitationSort = Literal["created_at", "-created_at", "valid_until", "-valid_until"]


class RoleView(BaseModel):
    role: str
    scope: Literal["platform", "community"]
    community_id: UUID | None = None


class InvitationView(BaseModel):
    invitation_id: UUID
    invitee_email: str
    inviter_id: UUID
    roles: list[RoleView]
    locale: str
    status: InvitationStatus
    created_at: datetime
    valid_from: datetime
    valid_until: datetime
    batch_id: UUID | None
    accepted_at: datetime | None
    accepted_user_id: UUID | None
    expired_at: datetime | None
    revoked_at: datetime | None
    times_sent: int
    last_sent_at: datetime | None
    resend_requests: int
    reminders: int


@dataclass(frozen=True, slots=True)
class InvitationFilter:
    status: InvitationStatus | None = None
    inviter: UUID | None = None
    role: str | None = None
    q: str | None = None
    valid_until_before: datetime | None = None


async def find_invitations(
    pool: asyncpg.Pool[Any], version: int, wanted: InvitationFilter, *, sort: InvitationSort,
    after: dict[str, Any] | None, limit: int, revealer: Revealer, scan_limit: int,
) -> Page[InvitationView]:
    board = Tables(NAME, version)["board"]
    column = sort.lstrip("-")
    order = "DESC" if sort.startswith("-") else "ASC"

    async def fetch(position: dict[str, Any] | None, count: int) -> list[asyncpg.Record]:
        clauses, args = ["status <> 'unknown'"], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if wanted.status is not None:
            clauses.append(f"status = {arg(wanted.status)}")
        if wanted.inviter is not None:
            clauses.append(f"inviter_id = {arg(wanted.inviter)}")
        if wanted.role is not None:
            clauses.append(f"{arg(wanted.role)} = ANY(role_names)")
        if wanted.valid_until_before is not None:
            clauses.append(f"valid_until < {arg(wanted.valid_until_before)}")
        if position is not None:
            key = arg(datetime.fromisoformat(str(position["key"])))
            ident = arg(UUID(str(position["id"])))
            clauses.append(f"({column}, invitation_id) {'<' if order == 'DESC' else '>'} "
                           f"({key}::timestamptz, {ident}::uuid)")
        return list(await pool.fetch(
            f"SELECT * FROM {board} WHERE {' AND '.join(clauses)} "
            f"ORDER BY {column} {order}, invitation_id {order} LIMIT {arg(count)}", *args))

    async def views(rows: list[asyncpg.Record]) -> list[InvitationView]:
        emails = await revealer.reveal_many([r["invitee_email"] for r in rows],
                                            owner="invitations")
        return [_view(row, email) for row, email in zip(rows, emails, strict=True)]

    def position_of(row: asyncpg.Record) -> dict[str, Any]:
        return {"sort": sort, "key": row[column].isoformat(), "id": str(row["invitation_id"])}

    needle = wanted.q.casefold() if wanted.q else None
    return await keyset_page(
        fetch, views, position_of, after=after, limit=limit, scan_limit=scan_limit,
        matches=(lambda view: needle in view.invitee_email.casefold()) if needle else None)


def shown_subjects(views: list[InvitationView]) -> list[UUID]:
    """Invitations whose invitee e-mail a page showed in clear (the key subject is the id)."""
    return [view.invitation_id for view in views if view.invitee_email != ERASED]


def _view(row: asyncpg.Record, email: str) -> InvitationView:
    return InvitationView(
        invitation_id=row["invitation_id"], invitee_email=email, inviter_id=row["inviter_id"],
        roles=[RoleView(**role) for role in json.loads(row["roles"])], locale=row["locale"],
        status=row["status"], created_at=row["created_at"], valid_from=row["valid_from"],
        valid_until=row["valid_until"], batch_id=row["batch_id"],
        accepted_at=row["accepted_at"], accepted_user_id=row["accepted_user_id"],
        expired_at=row["expired_at"], revoked_at=row["revoked_at"],
        times_sent=row["times_sent"], last_sent_at=row["last_sent_at"],
        resend_requests=row["resend_requests"], reminders=row["reminders"],
    )
