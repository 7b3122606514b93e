"""Idempotency-Key on the real PostgreSQL: a retried write gets the first answer, once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

from eventkit.http.app import create_service_app
from eventkit.http.idempotency import (
    REPLAYED_HEADER,
    Idempotency,
    IdempotencyKey,
    IdempotencyStore,
    fingerprint_request,
    request_fingerprint,
)
from eventkit.http.problems import PROBLEM_BASE_URI, Problem
from eventkit.migrations import apply_migrations
from eventkit.settings import ServiceSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    await apply_migrations(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    await pool.execute("CREATE TABLE invitations (id uuid PRIMARY KEY, email text NOT NULL)")
    try:
        yield pool
    finally:
        await pool.close()


def fingerprint(body: dict[str, Any], principal: str = "manager-1") -> str:
    return request_fingerprint(
        method="POST", path="/v1/invitations", body=json.dumps(body).encode(), principal=principal
    )


async def invite(
    pool: asyncpg.Pool[Any], store: IdempotencyStore, key: str, email: str
) -> tuple[int, str]:
    """A command in the recommended shape: claim, act, remember, one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        previous = await store.claim(conn, key, fingerprint({"email": email}))
        if previous is not None:
            return previous.status_code, previous.body
        invitation_id = uuid.uuid4()
        await conn.execute("INSERT INTO invitations VALUES ($1, $2)", invitation_id, email)
        answer = await store.remember(conn, key, 201, {"id": invitation_id, "email": email})
        return answer.status_code, answer.body


async def test_the_same_key_and_body_replay_the_first_answer(pool: asyncpg.Pool[Any]) -> None:
    store = IdempotencyStore()

    first = await invite(pool, store, "key-1", "ada@example.org")
    again = await invite(pool, store, "key-1", "ada@example.org")

    assert again == first
    assert first[0] == 201
    assert await pool.fetchval("SELECT count(*) FROM invitations") == 1


async def test_body_key_order_and_spacing_are_the_same_request() -> None:
    assert request_fingerprint(
        method="POST", path="/v1/x", body=b'{"a": 1, "b": [1, 2]}', principal="p"
    ) == request_fingerprint(method="POST", path="/v1/x", body=b'{"b":[1,2],"a":1}', principal="p")
    assert request_fingerprint(
        method="POST", path="/v1/x", body=b'{"a":1}', principal="p"
    ) != request_fingerprint(method="POST", path="/v1/x", body=b'{"a":1}', principal="q")


async def test_the_same_key_with_another_body_is_a_422(pool: asyncpg.Pool[Any]) -> None:
    store = IdempotencyStore()
    await invite(pool, store, "key-1", "ada@example.org")

    with pytest.raises(Problem) as refused:
        await invite(pool, store, "key-1", "grace@example.org")

    assert refused.value.status == 422
    assert refused.value.problem_type.slug == "idempotency-key-reused"
    assert await pool.fetchval("SELECT count(*) FROM invitations") == 1


async def test_a_key_in_flight_is_a_409_and_free_again_once_committed(
    pool: asyncpg.Pool[Any],
) -> None:
    store = IdempotencyStore()
    same = fingerprint({"email": "ada@example.org"})
    async with pool.acquire() as first, first.transaction():
        assert await store.claim(first, "key-1", same) is None

        async with pool.acquire() as second:
            with pytest.raises(Problem) as busy:
                async with second.transaction():
                    # Answers at once: the first transaction is not waited for.
                    async with asyncio.timeout(2):
                        await store.claim(second, "key-1", same)
        assert busy.value.status == 409
        assert busy.value.problem_type.slug == "idempotency-key-in-use"
        await store.remember(first, "key-1", 201, {"id": "inv-1"})

    async with pool.acquire() as later, later.transaction():
        replay = await store.claim(later, "key-1", same)
    assert replay is not None
    assert (replay.status_code, json.loads(replay.body)) == (201, {"id": "inv-1"})


async def test_a_rolled_back_command_leaves_no_answer_behind(pool: asyncpg.Pool[Any]) -> None:
    store = IdempotencyStore()

    with pytest.raises(RuntimeError, match="crash"):
        async with pool.acquire() as conn, conn.transaction():
            assert await store.claim(conn, "key-1", fingerprint({"email": "a@x"})) is None
            await conn.execute("INSERT INTO invitations VALUES ($1, 'a@x')", uuid.uuid4())
            await store.remember(conn, "key-1", 201, {"ok": True})
            raise RuntimeError("crash before commit")

    # Neither the effect nor the answer survived, so the retry runs the command.
    assert await pool.fetchval("SELECT count(*) FROM invitations") == 0
    assert await invite(pool, store, "key-1", "a@x") is not None
    assert await pool.fetchval("SELECT count(*) FROM invitations") == 1


async def test_claims_outside_a_transaction_are_refused(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the command's transaction"):
            await IdempotencyStore().claim(conn, "key-1", "fp")


async def test_an_expired_key_runs_the_command_again(pool: asyncpg.Pool[Any]) -> None:
    store = IdempotencyStore(ttl=timedelta(milliseconds=300))
    await invite(pool, store, "key-1", "ada@example.org")

    await asyncio.sleep(0.4)
    await invite(pool, store, "key-1", "grace@example.org")  # no 422: the old use expired

    assert await pool.fetchval("SELECT count(*) FROM invitations") == 2
    await invite(pool, store, "key-2", "x@example.org")
    await asyncio.sleep(0.4)
    assert await store.purge_expired(pool) == 2
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0


# Through HTTP, with the header dependency and the store the app factory provides.


class NewInvitation(BaseModel):
    email: str


def invitations_router(pool: asyncpg.Pool[Any], gate: asyncio.Event) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/invitations", status_code=201)
    async def create_invitation(
        command: NewInvitation, request: Request, key: IdempotencyKey, idempotency: Idempotency
    ) -> Response:
        fp = await fingerprint_request(request, principal="manager-1")
        async with pool.acquire() as conn, conn.transaction():
            if key is not None:
                previous = await idempotency.claim(conn, key, fp)
                if previous is not None:
                    return previous.to_response(replayed=True)
            await gate.wait()
            invitation_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO invitations VALUES ($1, $2)", invitation_id, command.email
            )
            body = {"id": invitation_id, "email": command.email}
            if key is None:
                return Response(json.dumps(body, default=str), 201, media_type="application/json")
            answer = await idempotency.remember(conn, key, 201, body, {"Location": "/v1/x"})
        return answer.to_response()

    return router


@pytest.fixture
def gate() -> asyncio.Event:
    opened = asyncio.Event()
    opened.set()
    return opened


@pytest.fixture
def app(pool: asyncpg.Pool[Any], database_url: str, gate: asyncio.Event) -> FastAPI:
    settings = ServiceSettings(
        service_name="invitations", http_port=8002,
        database_url=database_url,
    )
    return create_service_app(settings, routers=[invitations_router(pool, gate)])


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://invitations") as client:
        yield client


async def test_a_retried_request_gets_the_same_answer_over_http(
    client: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    headers = {"Idempotency-Key": "7c1f6a3e-retry"}

    first = await client.post("/v1/invitations", json={"email": "ada@x"}, headers=headers)
    retry = await client.post("/v1/invitations", content=b'{ "email" : "ada@x" }',
                              headers={**headers, "content-type": "application/json"})

    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"] == "/v1/x"
    assert retry.headers[REPLAYED_HEADER] == "true" and REPLAYED_HEADER not in first.headers
    assert await pool.fetchval("SELECT count(*) FROM invitations") == 1


async def test_a_reused_key_is_a_422_problem_over_http(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "key-1"}
    await client.post("/v1/invitations", json={"email": "ada@x"}, headers=headers)

    response = await client.post("/v1/invitations", json={"email": "bob@x"}, headers=headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"{PROBLEM_BASE_URI}idempotency-key-reused"


async def test_a_concurrent_request_with_the_key_is_a_409(
    client: httpx.AsyncClient, gate: asyncio.Event, pool: asyncpg.Pool[Any]
) -> None:
    gate.clear()
    headers = {"Idempotency-Key": "key-1"}
    first = asyncio.create_task(
        client.post("/v1/invitations", json={"email": "ada@x"}, headers=headers)
    )
    while await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0:
        await asyncio.sleep(0.01)

    second = await client.post("/v1/invitations", json={"email": "ada@x"}, headers=headers)
    gate.set()

    assert second.status_code == 409
    assert second.json()["type"] == f"{PROBLEM_BASE_URI}idempotency-key-in-use"
    assert second.headers["retry-after"]
    assert (await first).status_code == 201


@pytest.mark.parametrize("bad_key", ["", "x" * 256, "has space", "naïve"])
async def test_a_malformed_key_is_a_400(client: httpx.AsyncClient, bad_key: str) -> None:
    response = await client.post(
        "/v1/invitations", json={"email": "ada@x"},
        headers=[(b"Idempotency-Key", bad_key.encode())],
    )

    assert response.status_code == 400
    assert response.json()["type"] == f"{PROBLEM_BASE_URI}invalid-idempotency-key"


async def test_writes_without_a_key_still_work(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/invitations", json={"email": "ada@x"})

    assert response.status_code == 201
