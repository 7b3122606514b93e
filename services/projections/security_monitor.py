"""The security monitor read model: sign-in failures, lockouts, takeovers, escalations.

Every security-relevant event is one row; windows are counted at read time
over an index on (who, when), so any window length can be asked for and a
rebuild gives the same counts (docs/DESIGN.md says why this is SQL and not
faust's windowed tables). A success that follows ``takeover_failures`` or
more failures of the same account within ``takeover_window`` is recorded as
a suspected takeover when it is applied: the failures precede it in the
account's partition, so the finding is the same on every replay, whatever
the batches. A batch is one INSERT of all its rows, after one query counting
the failures already applied in each success's window.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from eventkit.database import Connection
from schemas.identity import LoginFailed, LoginSucceeded, RoleGranted, UserLockedOut
from services.projections.readmodels import Change, ReadModel, Tables

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
           "occurred_at, detail) SELECT e, k, u, c, a, o, d::jsonb FROM unnest($1::uuid[], "
           "$2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::timestamptz[], $7::text[]) "
           "AS r(e, k, u, c, a, o, d) ON CONFLICT (event_id) DO NOTHING")
# Failures already applied in each success's window, one row per success (n is its index).
_FAILURES_BEFORE = ("SELECT s.n, count(e.event_id) AS failures "
                    "FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) "
                    "WITH ORDINALITY AS s(user_id, since, until, n) "
                    "LEFT JOIN {table} AS e ON e.user_id = s.user_id AND e.kind = 'login_failed' "
                    "AND e.occurred_at > s.since AND e.occurred_at <= s.until GROUP BY s.n")
Row = tuple[UUID, str, UUID, str | None, UUID | None, datetime, str]


def read_model(*, takeover_failures: int = 5, takeover_window: timedelta = timedelta(minutes=15)
               ) -> ReadModel:
    async def project(connection: Connection, t: Tables, changes: Sequence[Change]) -> None:
        rows: list[Row] = []
        for change in changes:
            envelope, event, at = change.envelope, change.event, change.envelope.time
            match event:
                case LoginFailed():
                    rows.append((envelope.id, "login_failed", event.user_id,
                                 event.client_address_hash, None, at,
                                 json.dumps({"failure": event.failure,
                                             "consecutive_failures": event.consecutive_failures})))
                case LoginSucceeded():
                    rows.append((envelope.id, "login_succeeded", event.user_id, None, None, at,
                                 "{}"))
                case UserLockedOut():
                    rows.append((envelope.id, "locked_out", event.user_id, None, None, at,
                                 json.dumps({"until": event.until.isoformat(),
                                             "failed_attempts": event.failed_attempts})))
                case RoleGranted() if event.scope == "platform" or event.privilege_escalation:
                    rows.append((envelope.id, "privilege_escalation", event.user_id, None,
                                 event.granted_by, at, json.dumps({"role": event.role})))
                case _:
                    pass
        rows += await _takeovers(connection, t["events"], rows, changes,
                                 failures=takeover_failures, window=takeover_window)
        if rows:
            await connection.execute(_INSERT.format(table=t["events"]),
                                     *(list(column) for column in zip(*rows, strict=True)))

    return ReadModel(name=NAME, ddl=DDL, tables=TABLES, indexes=INDEXES, project=project,
                     follows=(LoginFailed, LoginSucceeded, UserLockedOut, RoleGranted))


async def _takeovers(
    connection: Connection, table: str, rows: Sequence[Row], changes: Sequence[Change],
    *, failures: int, window: timedelta,
) -> list[Row]:
    """A suspected takeover per success with ``failures`` or more failures in its window.

    Counted as if the batch were applied event by event: the failures already
    in the table, plus those earlier in this batch (same account, same window).
    """
    successes = [row for row in rows if row[1] == "login_succeeded"]
    if not successes:
        return []
    counted = await connection.fetch(
        _FAILURES_BEFORE.format(table=table), [row[2] for row in successes],
        [row[5] - window for row in successes], [row[5] for row in successes])
    before = {record["n"]: record["failures"] for record in counted}
    sessions = {change.envelope.id: change.event.session_id for change in changes
                if isinstance(change.event, LoginSucceeded)}
    found: list[Row] = []
    in_batch: dict[UUID, list[datetime]] = {}
    n = 0
    for event_id, kind, user_id, _, _, at, _ in rows:
        if kind == "login_failed":
            in_batch.setdefault(user_id, []).append(at)
        elif kind == "login_succeeded":
            n += 1
            earlier = sum(1 for failed_at in in_batch.get(user_id, ())
                          if at - window < failed_at <= at)
            count = before[n] + earlier
            if count >= failures:
                found.append((uuid.uuid5(event_id, "takeover_suspected"), "takeover_suspected",
                              user_id, None, None, at,
                              json.dumps({"failures": count,
                                          "window_seconds": int(window.total_seconds()),
                                          "session_id": str(sessions[event_id])})))
    return found
