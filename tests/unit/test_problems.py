"""Errors reach clients as RFC 9457 problem details: bad input is a 4xx naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field

from eventkit.http.app import create_service_app
from eventkit.http.problems import PROBLEM_BASE_URI, PROBLEM_MEDIA_TYPE, Problem, ProblemType
from eventkit.settings import ServiceSettings

GUEST_LIST_FULL = ProblemType("guest-list-full", "The guest list is full", 409)


class Guest(BaseModel):
    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    plus_ones: int = Field(default=0, ge=0, le=3)


class Party(BaseModel):
    guests: list[Guest]


def party_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/parties", status_code=201)
    async def create_party(party: Party) -> dict[str, int]:
        return {"guests": len(party.guests)}

    @router.get("/parties")
    async def list_parties(limit: int = Query(default=10, ge=1, le=100)) -> list[str]:
        return []

    @router.post("/parties/full")
    async def add_to_full_party() -> None:
        raise Problem(type_=GUEST_LIST_FULL, detail="party 7 has 50 guests", party_id="7")

    @router.post("/parties/taken")
    async def conflicting() -> None:
        raise Problem(status=409, type_="conflict", detail="that name is taken", name="x")

    @router.get("/parties/crash")
    async def crash() -> None:
        raise RuntimeError("connection to 10.0.0.7 failed: password=hunter2")

    return router


def settings() -> ServiceSettings:
    return ServiceSettings(
        service_name="parties",
        http_port=9000,
        database_url="postgresql://guestlist@127.0.0.1:5432/guestlist_parties",
    )


@pytest.fixture
def app() -> FastAPI:
    return create_service_app(settings(), routers=[party_router()])


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: the client sees what a real server would send.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://parties") as client:
        yield client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert isinstance(body, dict)
    assert body["type"] == f"{PROBLEM_BASE_URI}{slug}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_an_invalid_field_is_a_422_that_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/parties",
        json={"guests": [{"name": "Ada", "email": "ada@example.org"},
                         {"name": "", "email": "not-an-email", "plus_ones": 9}]},
    )

    body = assert_problem(response, 422, "validation-error")
    fields = {error["field"] for error in body["errors"]}  # type: ignore[attr-defined]
    assert fields == {"guests[1].name", "guests[1].email", "guests[1].plus_ones"}
    assert all(error["in"] == "body" and error["message"] for error in body["errors"])  # type: ignore[attr-defined]
    assert body["instance"] == "/v1/parties"


async def test_a_missing_field_is_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/parties", json={"guests": [{"name": "Ada"}]})

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"] == [  # the rejected input is never echoed back
        {"field": "guests[0].email", "in": "body", "message": "Field required", "code": "missing"}
    ]


async def test_a_bad_query_parameter_is_named_with_its_location(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/parties", params={"limit": "0"})

    body = assert_problem(response, 422, "validation-error")
    assert [(e["field"], e["in"]) for e in body["errors"]] == [("limit", "query")]  # type: ignore[attr-defined]


async def test_malformed_json_is_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/parties", content=b'{"guests": [', headers={"content-type": "application/json"}
    )

    body = assert_problem(response, 400, "malformed-json")
    assert "character" in str(body["detail"])


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")

    body = assert_problem(response, 404, "not-found")
    assert body["instance"] == "/v1/nothing-here"


async def test_a_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/parties")

    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"]


async def test_a_service_problem_keeps_its_type_and_extension_members(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/parties/full")

    body = assert_problem(response, 409, "guest-list-full")
    assert body["title"] == "The guest list is full"
    assert body["detail"] == "party 7 has 50 guests"
    assert body["party_id"] == "7"


async def test_a_problem_raised_by_slug_uses_the_catalogue(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/parties/taken")

    body = assert_problem(response, 409, "conflict")
    assert body["name"] == "x"


async def test_an_unhandled_error_is_a_500_that_reveals_nothing(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await client.get("/v1/parties/crash", headers={"X-Request-ID": "req-42"})

    body = assert_problem(response, 500, "internal-error")
    assert "hunter2" not in response.text and "10.0.0.7" not in response.text
    assert body["request_id"] == "req-42"
    # The operator finds the error in the log under the id the client saw.
    logged = capsys.readouterr().out
    assert "req-42" in logged and "RuntimeError" in logged
    assert "hunter2" not in logged


def test_an_unknown_slug_is_refused_when_raised() -> None:
    with pytest.raises(ValueError, match="unknown problem type"):
        Problem(type_="made-up-thing")


def test_extension_members_cannot_replace_standard_ones() -> None:
    with pytest.raises(ValueError, match="may not replace"):
        clashing: dict[str, Any] = {"type": "https://elsewhere.example/x"}
        Problem(type_="conflict", **clashing)
