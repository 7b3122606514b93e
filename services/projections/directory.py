"""The user directory read model: one row per person, their roles, who invited them.

Personal values (e-mail, name) are kept as the events carried them,
encrypted under the person's key, and opened only when a page is shown; a
deletion clears them here as well. Invitations are followed only for their
inviter, since ``UserRegistered`` names the invitation, not who sent it; the
two arrive on different topics, applied by concurrent transactions, so the
link is made when reading (a join), never by one side updating the other.
"""

from __future__ import annotations

from eventkit.database import Connection
from eventkit.envelope import Envelope
from eventkit.registry import EventData
from schemas.identity import (
    LoginSucceeded,
    RoleGranted,
    RoleRevoked,
    UserDeleted,
    UserDeletionRequested,
    UserEmailConfirmed,
    UserLockedOut,
    UserProfileUpdated,
    UserReactivated,
    UserRegistered,
    UserSuspended,
)
from schemas.invitations import InvitationCreated
from services.projections.readmodels import ReadModel, Tables

NAME = "directory"
STATUSES = ("pending_confirmation", "active", "suspended", "deleted")

DDL = """
CREATE TABLE IF NOT EXISTS {users} (
    user_id           uuid        PRIMARY KEY,
    email             text,
    name              text,
    locale            text        NOT NULL,
    status            text        NOT NULL,
    registered_at     timestamptz NOT NULL,
    confirmed_at      timestamptz,
    last_sign_in_at   timestamptz,
    suspended_until   timestamptz,
    suspension_reason text,
    locked_until      timestamptz,
    deletion_due_at   timestamptz,
    deleted_at        timestamptz,
    via_invitation_id uuid
);
CREATE INDEX IF NOT EXISTS {users_registered} ON {users} (registered_at, user_id);
CREATE INDEX IF NOT EXISTS {users_activity} ON {users}
    ((coalesce(last_sign_in_at, registered_at)), user_id);
CREATE INDEX IF NOT EXISTS {users_invitation} ON {users} (via_invitation_id);
CREATE TABLE IF NOT EXISTS {roles} (
    user_id      uuid        NOT NULL,
    role         text        NOT NULL,
    scope        text        NOT NULL,
    -- The nil UUID for platform roles, so the key needs no NULL.
    community_id uuid        NOT NULL,
    granted_by   uuid,
    granted_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, role, community_id)
);
CREATE INDEX IF NOT EXISTS {roles_role} ON {roles} (role, community_id);
CREATE TABLE IF NOT EXISTS {inviters} (
    invitation_id uuid PRIMARY KEY,
    inviter_id    uuid NOT NULL
);
"""
TABLES = ("users", "roles", "inviters")
INDEXES = ("users_registered", "users_activity", "users_invitation", "roles_role")
NIL = "00000000-0000-0000-0000-000000000000"


async def project(connection: Connection, t: Tables, envelope: Envelope, event: EventData) -> None:
    at = envelope.time
    users = t["users"]
    match event:
        case UserRegistered():
            await connection.execute(
                f"INSERT INTO {users} (user_id, email, name, locale, status, registered_at, "
                "via_invitation_id) VALUES ($1, $2, $3, $4, 'pending_confirmation', $5, $6) "
                "ON CONFLICT (user_id) DO NOTHING",
                event.user_id, event.email, event.name, event.locale, at, event.via_invitation_id)
        case UserEmailConfirmed():
            await connection.execute(
                f"UPDATE {users} SET confirmed_at = coalesce(confirmed_at, $2), status = CASE "
                "WHEN status = 'pending_confirmation' THEN 'active' ELSE status END "
                "WHERE user_id = $1", event.user_id, at)
        case UserProfileUpdated():
            await connection.execute(
                f"UPDATE {users} SET name = $2, locale = $3 WHERE user_id = $1 "
                "AND status <> 'deleted'", event.user_id, event.name, event.locale)
        case UserSuspended():
            await connection.execute(
                f"UPDATE {users} SET status = 'suspended', suspended_until = $2, "
                "suspension_reason = $3 WHERE user_id = $1 AND status <> 'deleted'",
                event.user_id, event.until, event.reason)
        case UserReactivated():
            await connection.execute(
                f"UPDATE {users} SET status = CASE WHEN confirmed_at IS NULL "
                "THEN 'pending_confirmation' ELSE 'active' END, suspended_until = NULL, "
                "suspension_reason = NULL WHERE user_id = $1 AND status = 'suspended'",
                event.user_id)
        case UserLockedOut():
            await connection.execute(
                f"UPDATE {users} SET locked_until = $2 WHERE user_id = $1",
                event.user_id, event.until)
        case LoginSucceeded():
            await connection.execute(
                f"UPDATE {users} SET last_sign_in_at = greatest(last_sign_in_at, $2) "
                "WHERE user_id = $1", event.user_id, at)
        case RoleGranted():
            await connection.execute(
                f"INSERT INTO {t['roles']} (user_id, role, scope, community_id, granted_by, "
                "granted_at) VALUES ($1, $2, $3, coalesce($4, $6::uuid), $5, $7) "
                "ON CONFLICT (user_id, role, community_id) DO UPDATE SET "
                "granted_by = excluded.granted_by, granted_at = excluded.granted_at",
                event.user_id, event.role, event.scope, event.community_id, event.granted_by,
                NIL, at)
        case RoleRevoked():
            await connection.execute(
                f"DELETE FROM {t['roles']} WHERE user_id = $1 AND role = $2 "
                "AND community_id = coalesce($3, $4::uuid)",
                event.user_id, event.role, event.community_id, NIL)
        case UserDeletionRequested():
            await connection.execute(
                f"UPDATE {users} SET deletion_due_at = $2 WHERE user_id = $1",
                event.user_id, event.delete_after)
        case UserDeleted():
            # The key is gone anyway; the copies go too, so nothing here outlives it.
            await connection.execute(
                f"UPDATE {users} SET status = 'deleted', deleted_at = $2, email = NULL, "
                "name = NULL WHERE user_id = $1", event.user_id, at)
        case InvitationCreated():
            await connection.execute(
                f"INSERT INTO {t['inviters']} (invitation_id, inviter_id) VALUES ($1, $2) "
                "ON CONFLICT (invitation_id) DO NOTHING", event.invitation_id, event.inviter_id)
        case _:
            pass


READ_MODEL = ReadModel(name=NAME, ddl=DDL, tables=TABLES, indexes=INDEXES, project=project)
