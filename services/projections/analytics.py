"""Invitation analytics and registrations over time, computed from the read models' tables.

Invitation figures are over the invitations *created* in ``[from, to)``:
acceptance rate = accepted / created; an inviter's success rate is the same
ratio over their invitations; the median time to accept is over accepted
ones. Expirations are those that *expired* in ``[from, to)``, by bucket, role
and inviter. Role-assignment consistency lists the distinct sets of roles
each inviter, and each bulk batch, assigned. Buckets are UTC days, ISO weeks
(starting Monday) or calendar months.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from services.projections import directory, invitation_board
from services.projections.readmodels import Tables

Bucket = Literal["day", "week", "month"]
NO_ROLE = "(none)"


class Outcomes(BaseModel):
    sent: int
    accepted: int
    pending: int
    expired: int
    revoked: int
    success_rate: float | None
    median_seconds_to_accept: float | None


class InviterOutcomes(Outcomes):
    inviter_id: UUID


class Count(BaseModel):
    key: str
    count: int


class RoleSet(BaseModel):
    roles: list[str]
    count: int


class RoleConsistency(BaseModel):
    id: UUID
    invitations: int
    distinct_role_sets: int
    consistent: bool
    role_sets: list[RoleSet]


class Expirations(BaseModel):
    total: int
    by_bucket: list[Count]
    by_role: list[Count]
    by_inviter: list[Count]


class InvitationAnalytics(BaseModel):
    overall: Outcomes
    acceptance_rate: float | None
    by_inviter: list[InviterOutcomes]
    expirations: Expirations
    role_consistency_by_inviter: list[RoleConsistency]
    role_consistency_by_batch: list[RoleConsistency]


class RegistrationBucket(BaseModel):
    bucket_start: datetime
    total: int
    by_status: dict[str, int]
    by_route: dict[str, int]


_OUTCOMES = """
count(*) AS sent,
count(*) FILTER (WHERE status = 'accepted') AS accepted,
count(*) FILTER (WHERE status = 'pending') AS pending,
count(*) FILTER (WHERE status = 'expired') AS expired,
count(*) FILTER (WHERE status = 'revoked') AS revoked,
percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM accepted_at - created_at))
    FILTER (WHERE status = 'accepted') AS median_seconds
"""


def _outcomes(row: asyncpg.Record) -> dict[str, Any]:
    sent = int(row["sent"])
    median = row["median_seconds"]
    return {"sent": sent, "accepted": row["accepted"], "pending": row["pending"],
            "expired": row["expired"], "revoked": row["revoked"],
            "success_rate": row["accepted"] / sent if sent else None,
            "median_seconds_to_accept": float(median) if median is not None else None}


async def invitation_analytics(
    pool: asyncpg.Pool[Any], version: int, *, start: datetime, end: datetime, bucket: Bucket
) -> InvitationAnalytics:
    board = Tables(invitation_board.NAME, version)["board"]
    created = "status <> 'unknown' AND created_at >= $1 AND created_at < $2"
    expired = "status = 'expired' AND expired_at >= $1 AND expired_at < $2"
    overall = await pool.fetchrow(f"SELECT {_OUTCOMES} FROM {board} WHERE {created}", start, end)
    assert overall is not None
    inviters = await pool.fetch(
        f"SELECT inviter_id, {_OUTCOMES} FROM {board} WHERE {created} GROUP BY inviter_id "
        "ORDER BY count(*) DESC, inviter_id", start, end)
    by_bucket = await pool.fetch(
        f"SELECT date_trunc($3, expired_at AT TIME ZONE 'UTC') AS key, count(*) FROM {board} "
        f"WHERE {expired} GROUP BY 1 ORDER BY 1", start, end, bucket)
    by_role = await pool.fetch(
        f"SELECT role AS key, count(*) FROM {board}, unnest(CASE WHEN role_names = '{{}}' "
        f"THEN ARRAY['{NO_ROLE}'] ELSE role_names END) AS role WHERE {expired} "
        "GROUP BY 1 ORDER BY 2 DESC, 1", start, end)
    by_inviter = await pool.fetch(
        f"SELECT inviter_id::text AS key, count(*) FROM {board} WHERE {expired} "
        "GROUP BY 1 ORDER BY 2 DESC, 1", start, end)
    return InvitationAnalytics(
        overall=Outcomes(**_outcomes(overall)),
        acceptance_rate=_outcomes(overall)["success_rate"],
        by_inviter=[InviterOutcomes(inviter_id=row["inviter_id"], **_outcomes(row))
                    for row in inviters],
        expirations=Expirations(
            total=sum(row["count"] for row in by_inviter),
            by_bucket=[Count(key=row["key"].date().isoformat(), count=row["count"])
                       for row in by_bucket],
            by_role=[Count(key=row["key"], count=row["count"]) for row in by_role],
            by_inviter=[Count(key=row["key"], count=row["count"]) for row in by_inviter],
        ),
        role_consistency_by_inviter=await _consistency(pool, board, "inviter_id", created,
                                                       start, end),
        role_consistency_by_batch=await _consistency(pool, board, "batch_id",
                                                     f"{created} AND batch_id IS NOT NULL",
                                                     start, end),
    )


async def _consistency(
    pool: asyncpg.Pool[Any], board: str, column: str, where: str, start: datetime,
    end: datetime,
) -> list[RoleConsistency]:
    rows = await pool.fetch(
        f"SELECT {column} AS id, role_set, count(*) FROM {board} WHERE {where} "
        "GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2", start, end)
    grouped: dict[UUID, list[RoleSet]] = {}
    for row in rows:
        roles = row["role_set"].split(",") if row["role_set"] else []
        grouped.setdefault(row["id"], []).append(RoleSet(roles=roles, count=row["count"]))
    return [
        RoleConsistency(id=key, invitations=sum(s.count for s in sets),
                        distinct_role_sets=len(sets), consistent=len(sets) == 1, role_sets=sets)
        for key, sets in grouped.items()
    ]


async def registrations(
    pool: asyncpg.Pool[Any], version: int, *, start: datetime, end: datetime, bucket: Bucket
) -> list[RegistrationBucket]:
    users = Tables(directory.NAME, version)["users"]
    rows = await pool.fetch(
        f"SELECT date_trunc($3, registered_at AT TIME ZONE 'UTC') AS bucket, status, "
        "via_invitation_id IS NOT NULL AS invited, count(*) FROM "
        f"{users} WHERE registered_at >= $1 AND registered_at < $2 GROUP BY 1, 2, 3 ORDER BY 1",
        start, end, bucket)
    buckets: dict[datetime, RegistrationBucket] = {}
    for row in rows:
        found = buckets.setdefault(row["bucket"], RegistrationBucket(
            bucket_start=row["bucket"].replace(tzinfo=UTC), total=0,
            by_status=dict.fromkeys(directory.STATUSES, 0),
            by_route={"public": 0, "invitation": 0}))
        found.total += row["count"]
        found.by_status[row["status"]] += row["count"]
        found.by_route["invitation" if row["invited"] else "public"] += row["count"]
    return list(buckets.values())
