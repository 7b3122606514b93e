"""Reads: one invitation for organizers, the public view of a code, a batch's progress."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from eventkit.personal_data import ERASED
from eventkit.position import position_of_id
from eventkit.store import Transaction
from schemas.roles import RoleAssignment
from services.invitations.consistency import Consistency
from services.invitations.handlers import (
    InvitationHandlers,
    InvitationNotFound,
    PersonalDataErased,
    _connection,
)
from services.invitations.platform import current_platform


class InvitationView(BaseModel):
    id: UUID
    status: str
    invitee_email: str
    inviter_id: UUID
    roles: list[RoleAssignment]
    locale: str
    greeting: str | None
    valid_from: datetime
    valid_until: datetime
    created_at: datetime
    last_sent_at: datetime | None
    sent_count: int
    accepted_at: datetime | None
    accepted_user_id: UUID | None
    batch_id: UUID | None
    version: int
    consistency: Consistency | None = None


class PublicInvitationView(BaseModel):
    """What the registration page may show to whoever holds the code."""

    platform_name: str
    roles: list[RoleAssignment]
    greeting: str | None
    locale: str
    valid_from: datetime
    valid_until: datetime
    status: str


class BatchRowView(BaseModel):
    row: int
    outcome: str
    invitation_id: UUID | None = None
    reason: str | None = None


class BatchView(BaseModel):
    batch_id: UUID
    submitted_by: UUID
    submitted_at: datetime
    completed_at: datetime | None
    total: int
    processed: int
    created: int
    duplicate: int
    invalid: int
    rows: list[BatchRowView]
    next_after_row: int | None = None
    consistency: Consistency | None = None


async def _opened(
    handlers: InvitationHandlers, tx: Transaction, invitation_id: UUID, value: str | None
) -> str | None:
    try:
        return await handlers.open_field(tx, invitation_id, value)
    except PersonalDataErased:
        return ERASED


def shown_in_clear(**fields: str | None) -> list[str]:
    """The personal fields an answer shows: those present and not erased."""
    return [name for name, value in fields.items() if value is not None and value != ERASED]


async def invitation_view(
    handlers: InvitationHandlers, tx: Transaction, invitation_id: UUID
) -> tuple[InvitationView, str]:
    """The view, and the position of the invitation's last event it shows."""
    row = await _connection(tx).fetchrow(
        "SELECT * FROM invitations WHERE invitation_id = $1", invitation_id
    )
    if row is None:
        raise InvitationNotFound(str(invitation_id))
    loaded = await handlers.load(tx, invitation_id)
    created = loaded.created
    return InvitationView(
        id=invitation_id, status=row["status"],
        invitee_email=await _opened(handlers, tx, invitation_id, created.invitee_email) or ERASED,
        inviter_id=row["inviter_id"], roles=_roles(row["roles"]), locale=row["locale"],
        greeting=await _opened(handlers, tx, invitation_id, created.greeting),
        valid_from=row["valid_from"], valid_until=row["valid_until"],
        created_at=row["created_at"], last_sent_at=row["last_sent_at"],
        sent_count=row["sent_count"], accepted_at=row["accepted_at"],
        accepted_user_id=row["accepted_user_id"], batch_id=row["batch_id"],
        version=row["version"],
    ), loaded.position


async def public_view(
    handlers: InvitationHandlers, tx: Transaction, code: str
) -> tuple[PublicInvitationView, UUID]:
    """What the code's holder may see, and the invitation it belongs to."""
    conn = _connection(tx)
    row = await conn.fetchrow(
        "SELECT invitation_id, status, roles, locale, valid_from, valid_until "
        "FROM invitations WHERE code_hash = $1",
        handlers.secrets.code_hash(code),
    )
    if row is None:
        raise InvitationNotFound("no invitation has this code")
    created = (await handlers.load(tx, row["invitation_id"])).created
    platform = await current_platform(conn, fallback=handlers.platform_fallback)
    return PublicInvitationView(
        platform_name=platform.name, roles=_roles(row["roles"]),
        greeting=await _opened(handlers, tx, row["invitation_id"], created.greeting),
        locale=row["locale"], valid_from=row["valid_from"], valid_until=row["valid_until"],
        status=row["status"],
    ), row["invitation_id"]


async def batch_view(
    tx: Transaction, batch_id: UUID, *, after_row: int = 0, limit: int = 1000
) -> BatchView:
    """Progress counts, and one page of row outcomes after ``after_row``."""
    conn = _connection(tx)
    batch = await conn.fetchrow("SELECT * FROM invitation_batches WHERE batch_id = $1", batch_id)
    if batch is None:
        raise InvitationNotFound(str(batch_id))
    counted = await conn.fetch(
        "SELECT outcome, count(*) AS n FROM invitation_batch_rows "
        "WHERE batch_id = $1 AND outcome IS NOT NULL GROUP BY outcome",
        batch_id,
    )
    counts = {"created": 0, "duplicate": 0, "invalid": 0}
    for row in counted:
        counts[row["outcome"]] = row["n"]
    rows = await conn.fetch(
        "SELECT row_number, outcome, invitation_id, reason FROM invitation_batch_rows "
        "WHERE batch_id = $1 AND outcome IS NOT NULL AND row_number > $2 "
        "ORDER BY row_number LIMIT $3",
        batch_id, after_row, limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    # Where the next page starts; with limit=0 (counts only) that is where this one did.
    next_after = (rows[-1]["row_number"] if rows else after_row) if more else None
    return BatchView(
        batch_id=batch_id, submitted_by=batch["submitted_by"],
        submitted_at=batch["submitted_at"], completed_at=batch["completed_at"],
        total=batch["total"], processed=sum(counts.values()), **counts,
        rows=[
            BatchRowView(row=row["row_number"], outcome=row["outcome"],
                         invitation_id=row["invitation_id"], reason=row["reason"])
            for row in rows
        ],
        next_after_row=next_after,
    )


async def batch_position(tx: Transaction, batch_id: UUID) -> str | None:
    """The InvitationCreated of the batch's last created row: how far the batch had got."""
    event_id = await _connection(tx).fetchval(
        "SELECT e.event_id FROM invitation_batch_rows r JOIN events e "
        "ON e.stream_id = r.invitation_id::text AND e.version = 1 "
        "WHERE r.batch_id = $1 AND r.outcome = 'created' ORDER BY r.row_number DESC LIMIT 1",
        batch_id,
    )
    return position_of_id(event_id) if event_id is not None else None


def _roles(value: Any) -> list[RoleAssignment]:
    data = json.loads(value) if isinstance(value, str) else value
    return [RoleAssignment.model_validate(item) for item in data]
