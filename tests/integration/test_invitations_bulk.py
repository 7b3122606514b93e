"""Bulk uploads when rows go wrong in ways nobody foresaw, and when the worker dies mid-batch; on
the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from services.invitations.commands import CreateInvitation
from services.invitations.handlers import Created
from services.invitations.testing import RunningInvitations, running_invitations

pytestmark = pytest.mark.integration


def email() -> str:
    return f"kim-{uuid4().hex[:8]}@example.org"


async def finished(inv: RunningInvitations, batch_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            status = (await inv.client.get(f"/v1/invitations/bulk/{batch_id}",
                                           headers=inv.auth())).json()
            if status["completed_at"] is not None:
                return dict(status)
            await asyncio.sleep(0.1)


async def counts(inv: RunningInvitations) -> tuple[int, int, int]:
    pool = inv.service.store.pool
    return (
        await pool.fetchval("SELECT count(*) FROM invitations"),
        await pool.fetchval("SELECT count(*) FROM invitation_keys"),
        await pool.fetchval("SELECT count(*) FROM events WHERE type LIKE '%InvitationCreated%'"),
    )


async def test_a_row_that_fails_unexpectedly_is_invalid_with_a_reason_and_the_rest_goes_on(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        poison, good = email(), [email() for _ in range(4)]
        handlers = inv.service.handlers
        create = handlers.create

        async def create_or_break(tx: Any, command: CreateInvitation, **kwargs: Any) -> Created:
            created = await create(tx, command, **kwargs)
            if command.invitee_email == poison:  # fails after its own writes were made
                raise ValueError(f"nobody foresaw {poison}")
            return created

        monkeypatch.setattr(handlers, "create", create_or_break)
        rows = [{"invitee_email": a} for a in good[:2]] + [{"invitee_email": poison}] + [
            {"invitee_email": a} for a in good[2:]]
        submitted = await inv.client.post("/v1/invitations/bulk", json={"rows": rows},
                                          headers=inv.auth())
        status = await finished(inv, submitted.json()["batch_id"])
        invitations, keys, created_events = await counts(inv)

    assert submitted.status_code == 202
    assert (status["created"], status["invalid"], status["duplicate"]) == (4, 1, 0)
    broken = status["rows"][2]
    assert broken["outcome"] == "invalid" and broken["invitation_id"] is None
    assert "ValueError" in broken["reason"] and poison not in broken["reason"]
    # the poison row's savepoint undid its invitation, key and event
    assert (invitations, keys, created_events) == (4, 4, 4)


async def test_a_nul_character_in_a_row_is_refused_with_the_field_named_and_nothing_kept(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        rows = [{"invitee_email": email(), "greeting": "Hi\u0000there"}]
        answer = await inv.client.post("/v1/invitations/bulk", json={"rows": rows},
                                       headers=inv.auth())
        batches = await inv.service.store.pool.fetchval("SELECT count(*) FROM invitation_batches")

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "rows" in answer.text and batches == 0


async def test_a_worker_whose_connection_dies_mid_batch_is_resumed_without_duplicates(
    database_url: str, kafka_bootstrap: str, kafka_topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_invitations(database_url, kafka_bootstrap, kafka_topics) as inv:
        addresses = [email() for _ in range(6)]
        handlers = inv.service.handlers
        create = handlers.create
        died = asyncio.Event()

        async def create_and_die_once(tx: Any, command: CreateInvitation, **kwargs: Any) -> Created:
            created = await create(tx, command, **kwargs)
            if command.invitee_email == addresses[3] and not died.is_set():
                died.set()  # the fourth row's work is done, the chunk not yet committed
                await tx.connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return created

        monkeypatch.setattr(handlers, "create", create_and_die_once)
        submitted = await inv.client.post(
            "/v1/invitations/bulk", json={"rows": [{"invitee_email": a} for a in addresses]},
            headers=inv.auth(),
        )
        async with asyncio.timeout(30):
            await died.wait()
        status = await finished(inv, submitted.json()["batch_id"])
        invitations, keys, created_events = await counts(inv)
        distinct = await inv.service.store.pool.fetchval(
            "SELECT count(DISTINCT invitation_id) FROM invitation_batch_rows")

    assert died.is_set()
    assert (status["created"], status["invalid"], status["duplicate"]) == (6, 0, 0)
    assert (invitations, keys, created_events, distinct) == (6, 6, 6, 6)
