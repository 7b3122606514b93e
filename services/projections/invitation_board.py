"""The invitation board read model: one row per invitation, its status, sends and roles.

``NotificationSent`` for an invitation mail counts a send (times sent, last
sent). It travels on another topic than the invitation's own events, so it
may arrive first: it then leaves a row with status ``unknown`` that the
invitation's creation fills in; reads never show such a row.
"""

from __future__ import annotations

import json
from uuid import UUID

from eventkit.database import Connection
from eventkit.envelope import Envelope
from eventkit.registry import EventData
from schemas.invitations import (
    InvitationAccepted,
    InvitationCreated,
    InvitationExpired,
    InvitationReminderDue,
    InvitationResent,
    InvitationRevoked,
)
from schemas.notifications import NotificationSent
from services.projections.readmodels import ReadModel, Tables, one_by_one

NAME = "invitations"

DDL = """
CREATE TABLE IF NOT EXISTS {board} (
    invitation_id    uuid        PRIMARY KEY,
    invitee_email    text,
    inviter_id       uuid,
    roles            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    role_names       text[]      NOT NULL DEFAULT '{{}}',
    -- The sorted role names joined by commas: what "the same roles" means for consistency.
    role_set         text        NOT NULL DEFAULT '',
    locale           text,
    status           text        NOT NULL DEFAULT 'unknown',
    created_at       timestamptz,
    valid_from       timestamptz,
    valid_until      timestamptz,
    batch_id         uuid,
    accepted_at      timestamptz,
    accepted_user_id uuid,
    expired_at       timestamptz,
    revoked_at       timestamptz,
    revoked_by       uuid,
    times_sent       integer     NOT NULL DEFAULT 0,
    last_sent_at     timestamptz,
    resend_requests  integer     NOT NULL DEFAULT 0,
    reminders        integer     NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {board_created} ON {board} (created_at, invitation_id);
CREATE INDEX IF NOT EXISTS {board_inviter} ON {board} (inviter_id, created_at);
CREATE INDEX IF NOT EXISTS {board_valid_until} ON {board} (valid_until, invitation_id);
CREATE INDEX IF NOT EXISTS {board_expired} ON {board} (expired_at) WHERE expired_at IS NOT NULL;
-- The dashboard's status filter in either order: without them a status with few rows
-- walks the whole created_at index (17 ms a page at 25,000 invitations).
CREATE INDEX IF NOT EXISTS {board_status_created} ON {board} (status, created_at, invitation_id);
CREATE INDEX IF NOT EXISTS {board_status_valid_until}
    ON {board} (status, valid_until, invitation_id);
"""
TABLES = ("board",)
INDEXES = ("board_created", "board_inviter", "board_valid_until", "board_expired",
           "board_status_created", "board_status_valid_until")


async def project(connection: Connection, t: Tables, envelope: Envelope, event: EventData) -> None:
    board, at = t["board"], envelope.time
    match event:
        case InvitationCreated():
            roles = [role.model_dump(mode="json") for role in event.roles]
            names = sorted({role.role for role in event.roles})
            await connection.execute(
                f"INSERT INTO {board} AS b (invitation_id, invitee_email, inviter_id, roles, "
                "role_names, role_set, locale, status, created_at, valid_from, valid_until, "
                "batch_id) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, 'pending', $8, $9, $10, $11) "
                "ON CONFLICT (invitation_id) DO UPDATE SET invitee_email = excluded.invitee_email, "
                "inviter_id = excluded.inviter_id, roles = excluded.roles, "
                "role_names = excluded.role_names, role_set = excluded.role_set, "
                "locale = excluded.locale, created_at = excluded.created_at, "
                "valid_from = excluded.valid_from, valid_until = excluded.valid_until, "
                "batch_id = excluded.batch_id, "
                "status = CASE WHEN b.status = 'unknown' THEN 'pending' ELSE b.status END",
                event.invitation_id, event.invitee_email, event.inviter_id, json.dumps(roles),
                names, ",".join(names), event.locale, at, event.valid_from, event.valid_until,
                event.batch_id)
        case InvitationResent():
            await connection.execute(
                f"UPDATE {board} SET resend_requests = resend_requests + 1 "
                "WHERE invitation_id = $1", event.invitation_id)
        case InvitationReminderDue():
            await connection.execute(
                f"UPDATE {board} SET reminders = reminders + 1 WHERE invitation_id = $1",
                event.invitation_id)
        case InvitationAccepted():
            await connection.execute(
                f"UPDATE {board} SET status = 'accepted', accepted_at = $2, accepted_user_id = $3 "
                "WHERE invitation_id = $1", event.invitation_id, event.accepted_at or at,
                event.user_id)
        case InvitationExpired():
            await connection.execute(
                f"UPDATE {board} SET status = 'expired', expired_at = $2 "
                "WHERE invitation_id = $1 AND status IN ('pending', 'unknown')",
                event.invitation_id, at)
        case InvitationRevoked():
            await connection.execute(
                f"UPDATE {board} SET status = 'revoked', revoked_at = $2, revoked_by = $3 "
                "WHERE invitation_id = $1 AND status IN ('pending', 'unknown')",
                event.invitation_id, at, event.revoked_by)
        case NotificationSent() if ".invitations." in event.cause_type:
            try:
                invitation_id = UUID(event.cause_subject)
            except ValueError:
                return
            await connection.execute(
                f"INSERT INTO {board} AS b (invitation_id, times_sent, last_sent_at) "
                "VALUES ($1, 1, $2) ON CONFLICT (invitation_id) DO UPDATE SET "
                "times_sent = b.times_sent + 1, last_sent_at = greatest(b.last_sent_at, $2)",
                invitation_id, at)
        case _:
            pass


READ_MODEL = ReadModel(
    name=NAME, ddl=DDL, tables=TABLES, indexes=INDEXES, project=one_by_one(project),
    follows=(InvitationCreated, InvitationResent, InvitationReminderDue, InvitationAccepted,
             InvitationExpired, InvitationRevoked, NotificationSent),
)
