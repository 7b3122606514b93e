"""Reset mails per account are limited where the scheduler makes the token, and reset requests
per client address at the edge, on the real PostgreSQL and Kafka: the answers stay the same for
every address, however often it is asked."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI

from services.identity.testing import (
    event_token,
    events_on,
    make_admin,
    open_platform,
    register_active,
    running_identity,
    sign_in,
)

pytestmark = pytest.mark.integration
UNKNOWN = "nobody-here@example.org"


def answer_shape(answer: httpx.Response) -> tuple[int, bytes, frozenset[tuple[str, str]]]:
    """Everything a caller sees of an answer but its request id."""
    headers = {(k, v) for k, v in answer.headers.items() if k.lower() != "x-request-id"}
    return answer.status_code, answer.content, frozenset(headers)


async def requests_taken_up(app: FastAPI, within: float = 30) -> None:
    """Wait until the scheduler took up every reset request that came in."""
    pool = app.state.identity.sessions.work.store.pool
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not await pool.fetchval("SELECT count(*) FROM password_reset_requests"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("reset requests left untaken")


async def test_the_fourth_reset_within_the_hour_makes_no_token_and_answers_alike(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap, scheduler_interval=0.2,
                                reset_mail_limit=3) as (client, app):
        await open_platform(client, await make_admin(app, client))
        user_id, address = await register_active(client, app)
        known, unknown = [], []
        for n in range(4):
            known.append(await client.post("/v1/password-resets", json={"email": address}))
            unknown.append(await client.post("/v1/password-resets", json={"email": UNKNOWN}))
            if n < 3:
                # Each of the first three is taken up before the next, so each makes a token.
                await event_token(app, user_id, "reset_token", skip=n)
        await requests_taken_up(app)
        tokens = await app.state.identity.sessions.work.store.pool.fetchval(
            "SELECT count(*) FROM one_time_tokens WHERE user_id = $1 "
            "AND purpose = 'reset_password'", user_id,
        )
        # A sign-in after it: its event comes after any the fourth request would have made.
        assert (await sign_in(client, address)).status_code == 201
        envelopes = await events_on(kafka_bootstrap, "identity.user", user_id, [
            "PasswordResetRequested"] * 3 + ["LoginSucceeded"])

    assert tokens == 3
    names = [p.name for p in envelopes]
    assert names.count("PasswordResetRequested") == 3
    assert names.index("LoginSucceeded") > max(
        i for i, name in enumerate(names) if name == "PasswordResetRequested")
    assert {answer_shape(a) for a in known + unknown} == {answer_shape(known[0])}
    assert known[0].status_code == 202


async def test_the_limit_is_per_account_another_address_still_gets_its_mail(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap, scheduler_interval=0.2,
                                reset_mail_limit=1) as (client, app):
        await open_platform(client, await make_admin(app, client))
        first_id, first = await register_active(client, app)
        second_id, second = await register_active(client, app, name="Grace Hopper")
        for _ in range(2):
            assert (await client.post("/v1/password-resets",
                                      json={"email": first})).status_code == 202
        await requests_taken_up(app)
        asked = await client.post("/v1/password-resets", json={"email": second})
        second_token = await event_token(app, second_id, "reset_token")
        pool = app.state.identity.sessions.work.store.pool
        per_user = dict(await pool.fetch(
            "SELECT user_id::text, count(*) FROM one_time_tokens "
            "WHERE purpose = 'reset_password' GROUP BY user_id"))

    assert asked.status_code == 202 and second_token
    assert per_user == {first_id: 1, second_id: 1}


async def test_a_client_past_its_window_gets_a_429_with_retry_after_for_any_address(
    database_url: str, kafka_bootstrap: str
) -> None:
    async with running_identity(database_url, kafka_bootstrap, scheduler_interval=0.2,
                                reset_request_limit=2) as (client, app):
        await open_platform(client, await make_admin(app, client))
        user_id, address = await register_active(client, app)
        allowed = [await client.post("/v1/password-resets", json={"email": email})
                   for email in (address, UNKNOWN)]
        known = await client.post("/v1/password-resets", json={"email": address})
        unknown = await client.post("/v1/password-resets", json={"email": UNKNOWN})
        # Another client address has a window of its own.
        other = httpx.ASGITransport(app=app, client=("198.51.100.9", 5000))
        async with httpx.AsyncClient(transport=other, base_url="http://identity") as neighbour:
            elsewhere = await neighbour.post("/v1/password-resets", json={"email": address})
        await requests_taken_up(app)
        pool = app.state.identity.sessions.work.store.pool
        tokens = await pool.fetchval(
            "SELECT count(*) FROM one_time_tokens WHERE user_id = $1 "
            "AND purpose = 'reset_password'", user_id,
        )

    assert [a.status_code for a in allowed] == [202, 202]
    assert known.status_code == unknown.status_code == 429
    assert known.headers["content-type"] == "application/problem+json"
    # The same problem for both (bar the request's own id, and Retry-After counting down).
    same = ("type", "title", "status", "detail")
    assert [known.json()[k] for k in same] == [unknown.json()[k] for k in same]
    assert abs(int(known.headers["retry-after"]) - int(unknown.headers["retry-after"])) <= 1
    assert 1 <= int(known.headers["retry-after"]) <= 15 * 60
    assert elsewhere.status_code == 202
    # The refused requests were not queued: one token from the first, one from the neighbour.
    assert tokens == 2
