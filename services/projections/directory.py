"""The user directory read model: one row per person, their roles, who invited them.

Personal values (e-mail, name) are kept as the events carried them,
encrypted under the person's key, and opened only when a page is shown; a
deletion clears them here as well. Invitations are followed only for their
inviter, since ``UserRegistered`` names the invitation, not who sent it; the
two arrive on different topics, applied by concurrent transactions, so the
link is made when reading (a join), never by one side updating the other.

A batch is applied with a few set-based statements whatever its size: the
people it touches are read (and locked) at once, their events are folded in
offset order in memory, and the rows that changed are written back at once;
role grants and revocations are folded per (person, role, community) likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventkit.database import Connection
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
from services.projections.readmodels import Change, ReadModel, Tables

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
-- The directory's status filter (suspended, pending confirmation) in registration order.
CREATE INDEX IF NOT EXISTS {users_status_registered} ON {users} (status, registered_at, user_id);
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
INDEXES = ("users_registered", "users_activity", "users_invitation", "users_status_registered",
           "roles_role")
NIL = "00000000-0000-0000-0000-000000000000"
NIL_ID = UUID(NIL)  # a platform role's community_id


USER_COLUMNS = ("user_id", "email", "name", "locale", "status", "registered_at", "confirmed_at",
                "last_sign_in_at", "suspended_until", "suspension_reason", "locked_until",
                "deletion_due_at", "deleted_at", "via_invitation_id")
_USER_TYPES = ("uuid", "text", "text", "text", "text", "timestamptz", "timestamptz",
               "timestamptz", "timestamptz", "text", "timestamptz", "timestamptz", "timestamptz",
               "uuid")
UserEvent = (UserRegistered | UserEmailConfirmed | UserProfileUpdated | UserSuspended
             | UserReactivated | UserLockedOut | LoginSucceeded | UserDeletionRequested
             | UserDeleted)
RoleKey = tuple[UUID, str, UUID]


async def project(connection: Connection, t: Tables, changes: Sequence[Change]) -> None:
    people: list[tuple[UserEvent, datetime]] = []
    roles: dict[RoleKey, _RoleChanges] = {}
    inviters: dict[UUID, UUID] = {}
    for change in changes:
        match change.event:
            case (UserRegistered() | UserEmailConfirmed() | UserProfileUpdated() | UserSuspended()
                  | UserReactivated() | UserLockedOut() | LoginSucceeded()
                  | UserDeletionRequested() | UserDeleted()) as event:
                people.append((event, change.envelope.time))
            case RoleGranted() | RoleRevoked() as event:
                key = (event.user_id, event.role, event.community_id or NIL_ID)
                roles.setdefault(key, _RoleChanges()).add(event, change.envelope.time)
            case InvitationCreated() as event:
                inviters.setdefault(event.invitation_id, event.inviter_id)
            case _:
                pass
    if people:
        await _write_people(connection, t["users"], people)
    if roles:
        await _write_roles(connection, t["roles"], roles)
    if inviters:
        await connection.execute(
            f"INSERT INTO {t['inviters']} (invitation_id, inviter_id) "
            "SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT (invitation_id) DO NOTHING",
            list(inviters), list(inviters.values()))


async def _write_people(
    connection: Connection, users: str, people: Sequence[tuple[UserEvent, datetime]]
) -> None:
    ids = sorted({event.user_id for event, _ in people})
    # Locked in one order, so two transactions touching the same people cannot deadlock.
    rows = await connection.fetch(
        f"SELECT {', '.join(USER_COLUMNS)} FROM {users} WHERE user_id = ANY($1::uuid[]) "
        "ORDER BY user_id FOR UPDATE", ids)
    known: dict[UUID, dict[str, Any]] = {row["user_id"]: dict(row) for row in rows}
    new: dict[UUID, dict[str, Any]] = {}
    changed: set[UUID] = set()
    for event, at in people:
        row = known.get(event.user_id) or new.get(event.user_id)
        if isinstance(event, UserRegistered):
            if row is None:  # a registration of someone already here changes nothing
                new[event.user_id] = _registered(event, at)
        elif row is not None:  # an event about someone not registered here changes nothing
            _fold(row, event, at)
            changed.add(event.user_id)
    if new:
        await connection.execute(
            f"INSERT INTO {users} ({', '.join(USER_COLUMNS)}) SELECT * FROM {_unnest()} "
            "ON CONFLICT (user_id) DO NOTHING", *_columns(new.values()))
    if updated := [known[user_id] for user_id in changed if user_id in known]:
        settings = ", ".join(f"{c} = v.{c}" for c in USER_COLUMNS[1:])
        await connection.execute(
            f"UPDATE {users} AS u SET {settings} FROM {_unnest()} AS v({', '.join(USER_COLUMNS)}) "
            "WHERE u.user_id = v.user_id", *_columns(updated))


def _registered(event: UserRegistered, at: datetime) -> dict[str, Any]:
    row = dict.fromkeys(USER_COLUMNS)
    row.update(user_id=event.user_id, email=event.email, name=event.name, locale=event.locale,
               status="pending_confirmation", registered_at=at,
               via_invitation_id=event.via_invitation_id)
    return row


def _fold(row: dict[str, Any], event: UserEvent, at: datetime) -> None:
    """What each event does to a person's row (the directory's rules, in one place)."""
    match event:
        case UserEmailConfirmed():
            row["confirmed_at"] = row["confirmed_at"] or at
            if row["status"] == "pending_confirmation":
                row["status"] = "active"
        case UserProfileUpdated() if row["status"] != "deleted":
            row.update(name=event.name, locale=event.locale)
        case UserSuspended() if row["status"] != "deleted":
            row.update(status="suspended", suspended_until=event.until,
                       suspension_reason=event.reason)
        case UserReactivated() if row["status"] == "suspended":
            row.update(status="pending_confirmation" if row["confirmed_at"] is None else "active",
                       suspended_until=None, suspension_reason=None)
        case UserLockedOut():
            row["locked_until"] = event.until
        case LoginSucceeded():
            last = row["last_sign_in_at"]
            row["last_sign_in_at"] = at if last is None else max(last, at)
        case UserDeletionRequested():
            row["deletion_due_at"] = event.delete_after
        case UserDeleted():
            # The key is gone anyway; the copies go too, so nothing here outlives it.
            row.update(status="deleted", deleted_at=at, email=None, name=None)
        case _:
            pass


def _unnest() -> str:
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(_USER_TYPES, start=1))
    return f"unnest({arrays})"


def _columns(rows: Iterable[dict[str, Any]]) -> list[list[Any]]:
    listed = list(rows)
    return [[row[column] for row in listed] for column in USER_COLUMNS]


class _RoleChanges:
    """Grants and revocations of one role of one person within a batch, folded in order."""

    def __init__(self) -> None:
        self.revoked = False  # a revocation came: the row is deleted first
        # user_id, role, scope, community_id, granted_by, granted_at of the grant that stands
        self.grant: list[Any] | None = None

    def add(self, event: RoleGranted | RoleRevoked, at: datetime) -> None:
        if isinstance(event, RoleRevoked):
            self.revoked, self.grant = True, None
        elif self.grant is None:  # the first grant after a revocation inserts, with its scope
            self.grant = [event.user_id, event.role, event.scope,
                          event.community_id or NIL_ID, event.granted_by, at]
        else:  # a later one only updates who granted it and when, as the upsert did
            self.grant[4:] = [event.granted_by, at]


async def _write_roles(connection: Connection, roles: str,
                       changes: dict[RoleKey, _RoleChanges]) -> None:
    if revoked := [key for key, change in changes.items() if change.revoked]:
        await connection.execute(
            f"DELETE FROM {roles} AS r USING unnest($1::uuid[], $2::text[], $3::uuid[]) "
            "AS d(user_id, role, community_id) WHERE r.user_id = d.user_id "
            "AND r.role = d.role AND r.community_id = d.community_id",
            *(list(column) for column in zip(*revoked, strict=True)))
    if granted := [change.grant for change in changes.values() if change.grant is not None]:
        await connection.execute(
            f"INSERT INTO {roles} (user_id, role, scope, community_id, granted_by, granted_at) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], "
            "$6::timestamptz[]) ON CONFLICT (user_id, role, community_id) DO UPDATE SET "
            "granted_by = excluded.granted_by, granted_at = excluded.granted_at",
            *(list(column) for column in zip(*granted, strict=True)))


READ_MODEL = ReadModel(
    name=NAME, ddl=DDL, tables=TABLES, indexes=INDEXES, project=project,
    follows=(UserRegistered, UserEmailConfirmed, UserProfileUpdated, UserSuspended,
             UserReactivated, UserLockedOut, LoginSucceeded, UserDeletionRequested, UserDeleted,
             RoleGranted, RoleRevoked, InvitationCreated),
)
