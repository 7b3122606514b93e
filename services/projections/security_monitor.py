"""The security monitor read model: sign-in failures, lockouts, takeovers, escalations.

Every security-relevant event is one row; windows are counted at read time
over an index on (who, when), so any window length can be asked for and a
rebuild gives the same counts (docs/DESIGN.md says why this is SQL and not
faust's windowed tables). A success that follows ``takeover_failures`` or
more failures of the same account within ``takeover_window`` is recorded as
a suspected takeover when it is applied: the failures precede it in the
account's partition, so the finding is the same on every replay.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from eventkit.database import Connection
from eventkit.envelope import Envelope
from eventkit.registry import EventData
from schemas.identity import LoginFailed, LoginSucceeded, RoleGranted, UserLockedOut
from services.projections.readmodels import Projection, ReadModel, Tables

NAME = "security"
KINDS = ("login_failed", "login_succeeded", "locked_out", "takeover_suspected",
         "privilege_escalation")

DDL = """
CREATE TABLE IF NOT EXISTS {events} (
    event_id            uuid        PRIMARY KEY,
    kind                text        NOT NULL,
    user_id             uuid        NOT NULL,
    client_address_hash text,
    actor_id            uuid,
    occurred_at         timestamptz NOT NULL,
    detail              jsonb       NOT NULL DEFAULT '{{}}'::jsonb
);
CREATE INDEX IF NOT EXISTS {events_kind} ON {events} (kind, occurred_at);
CREATE INDEX IF NOT EXISTS {events_user} ON {events} (user_id, kind, occurred_at);
CREATE INDEX IF NOT EXISTS {events_client} ON {events} (client_address_hash, occurred_at)
    WHERE client_address_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS {events_time} ON {events} (occurred_at, event_id);
"""
TABLES = ("events",)
INDEXES = ("events_kind", "events_user", "events_client", "events_time")
_INSERT = ("INSERT INTO {table} (event_id, kind, user_id, client_address_hash, actor_id, "
           "occurred_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) "
           "ON CONFLICT (event_id) DO NOTHING")


def read_model(*, takeover_failures: int = 5, takeover_window: timedelta = timedelta(minutes=15)
               ) -> ReadModel:
    async def project(connection: Connection, t: Tables, envelope: Envelope,
                      event: EventData) -> None:
        insert = _INSERT.format(table=t["events"])
        at = envelope.time
        match event:
            case LoginFailed():
                await connection.execute(
                    insert, envelope.id, "login_failed", event.user_id,
                    event.client_address_hash, None, at,
                    json.dumps({"failure": event.failure,
                                "consecutive_failures": event.consecutive_failures}))
            case LoginSucceeded():
                await connection.execute(insert, envelope.id, "login_succeeded", event.user_id,
                                         None, None, at, "{}")
                failures = await connection.fetchval(
                    f"SELECT count(*) FROM {t['events']} WHERE user_id = $1 "
                    "AND kind = 'login_failed' AND occurred_at > $2 AND occurred_at <= $3",
                    event.user_id, at - takeover_window, at)
                if failures >= takeover_failures:
                    await connection.execute(
                        insert, uuid.uuid5(envelope.id, "takeover_suspected"),
                        "takeover_suspected", event.user_id, None, None, at,
                        json.dumps({"failures": failures,
                                    "window_seconds": int(takeover_window.total_seconds()),
                                    "session_id": str(event.session_id)}))
            case UserLockedOut():
                await connection.execute(
                    insert, envelope.id, "locked_out", event.user_id, None, None, at,
                    json.dumps({"until": event.until.isoformat(),
                                "failed_attempts": event.failed_attempts}))
            case RoleGranted() if event.scope == "platform" or event.privilege_escalation:
                await connection.execute(
                    insert, envelope.id, "privilege_escalation", event.user_id, None,
                    event.granted_by, at, json.dumps({"role": event.role}))
            case _:
                pass

    projection: Projection = project
    return ReadModel(name=NAME, ddl=DDL, tables=TABLES, indexes=INDEXES, project=projection)
