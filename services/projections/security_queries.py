"""Reads of the security monitor: sliding-window counts ending at ``at``, and the event list."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from services.projections.pages import Page, keyset_page
from services.projections.readmodels import Tables
from services.projections.security_monitor import NAME

Kind = Literal["login_failed", "login_succeeded", "locked_out", "takeover_suspected",
               "privilege_escalation"]


class AccountCount(BaseModel):
    user_id: UUID
    count: int


class ClientCount(BaseModel):
    client_address_hash: str
    count: int


class SecurityEvent(BaseModel):
    event_id: UUID
    kind: Kind
    user_id: UUID
    client_address_hash: str | None
    actor_id: UUID | None
    occurred_at: datetime
    detail: dict[str, Any]


class SecuritySummary(BaseModel):
    window_start: datetime
    window_end: datetime
    failed_sign_ins: int
    failed_by_account: list[AccountCount]
    failed_by_client: list[ClientCount]
    lockouts: int
    takeovers_suspected: list[SecurityEvent]
    privilege_escalations: list[SecurityEvent]


async def summary(
    pool: asyncpg.Pool[Any], version: int, *, at: datetime, window: timedelta, top: int
) -> SecuritySummary:
    events = Tables(NAME, version)["events"]
    start = at - window
    inside = "occurred_at > $1 AND occurred_at <= $2"
    counts = await pool.fetchrow(
        f"SELECT count(*) FILTER (WHERE kind = 'login_failed') AS failed, "
        f"count(*) FILTER (WHERE kind = 'locked_out') AS lockouts FROM {events} WHERE {inside}",
        start, at)
    assert counts is not None
    accounts = await pool.fetch(
        f"SELECT user_id, count(*) FROM {events} WHERE kind = 'login_failed' AND {inside} "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3", start, at, top)
    clients = await pool.fetch(
        f"SELECT client_address_hash, count(*) FROM {events} WHERE kind = 'login_failed' "
        f"AND client_address_hash IS NOT NULL AND {inside} GROUP BY 1 ORDER BY 2 DESC, 1 "
        "LIMIT $3", start, at, top)
    notable = await pool.fetch(
        f"SELECT * FROM {events} WHERE kind IN ('takeover_suspected', 'privilege_escalation') "
        f"AND {inside} ORDER BY occurred_at DESC, event_id LIMIT $3", start, at, top)
    found = [_event(row) for row in notable]
    return SecuritySummary(
        window_start=start, window_end=at, failed_sign_ins=counts["failed"],
        failed_by_account=[AccountCount(user_id=r["user_id"], count=r["count"])
                           for r in accounts],
        failed_by_client=[ClientCount(client_address_hash=r["client_address_hash"],
                                      count=r["count"]) for r in clients],
        lockouts=counts["lockouts"],
        takeovers_suspected=[e for e in found if e.kind == "takeover_suspected"],
        privilege_escalations=[e for e in found if e.kind == "privilege_escalation"],
    )


async def find_events(
    pool: asyncpg.Pool[Any], version: int, *, kind: Kind | None, user_id: UUID | None,
    client_address_hash: str | None, start: datetime | None, end: datetime | None,
    after: dict[str, Any] | None, limit: int,
) -> Page[SecurityEvent]:
    events = Tables(NAME, version)["events"]

    async def fetch(position: dict[str, Any] | None, count: int) -> list[asyncpg.Record]:
        clauses: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column, value in (("kind", kind), ("user_id", user_id),
                              ("client_address_hash", client_address_hash)):
            if value is not None:
                clauses.append(f"{column} = {arg(value)}")
        if start is not None:
            clauses.append(f"occurred_at >= {arg(start)}")
        if end is not None:
            clauses.append(f"occurred_at < {arg(end)}")
        if position is not None:
            clauses.append(f"(occurred_at, event_id) < ("
                           f"{arg(datetime.fromisoformat(str(position['key'])))}::timestamptz, "
                           f"{arg(UUID(str(position['id'])))}::uuid)")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return list(await pool.fetch(
            f"SELECT * FROM {events} {where} ORDER BY occurred_at DESC, event_id DESC "
            f"LIMIT {arg(count)}", *args))

    async def views(rows: list[asyncpg.Record]) -> list[SecurityEvent]:
        return [_event(row) for row in rows]

    def position_of(row: asyncpg.Record) -> dict[str, Any]:
        return {"sort": "-occurred_at", "key": row["occurred_at"].isoformat(),
                "id": str(row["event_id"])}

    return await keyset_page(fetch, views, position_of, after=after, limit=limit)


def _event(row: asyncpg.Record) -> SecurityEvent:
    return SecurityEvent(
        event_id=row["event_id"], kind=row["kind"], user_id=row["user_id"],
        client_address_hash=row["client_address_hash"], actor_id=row["actor_id"],
        occurred_at=row["occurred_at"], detail=json.loads(row["detail"]))
