"""What the organizer guide has people do, as calls a user's client makes to the stack.

Every write answers a stream `version` and a `position`; the `Walkthrough`
keeps the newest version per stream, so the audit test can ask the log for
exactly those events, and positions let reads wait for their writes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx
from e2e_stack import Stack

PASSWORD = "correct horse battery staple"
MANAGER_EMAIL = "organizer@maison-commune.example"
MANAGER_PASSWORD = "organizer passphrase 2026"
PLATFORM = {
    "name": "Maison Commune",
    "requires_invitation": True,
    "time_zone": "Europe/Paris",
    "default_locale": "fr",
    "dormant_after_days": 90,
}
CAMILLE = "camille.martin@example.org"
# 23:30 UTC on New Year's Eve is 00:30 on 1 January in Paris: the mail must say the latter.
CAMILLE_VALID_UNTIL = "2026-12-31T23:30:00Z"
CAMILLE_GREETING = "Bienvenue Camille, ravie de vous compter parmi nous !"
COLLEAGUES = {
    "dominique": ("dominique.roux@maison-commune.example", "dominique passphrase 77"),
    "sacha": ("sacha.bernard@maison-commune.example", "sacha passphrase 2026"),
}
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass
class Walkthrough:
    """What the steps wrote so far: the newest version of each stream they touched."""

    versions: dict[str, int] = field(default_factory=dict)

    def wrote(self, stream: str, answer: dict[str, Any]) -> dict[str, Any]:
        version = answer.get("version")
        assert isinstance(version, int), f"a command answer without a version: {answer}"
        self.versions[stream] = max(version, self.versions.get(stream, 0))
        assert str(answer.get("position", "")).startswith("p1."), answer
        return answer


@dataclass
class Organizer:
    user_id: str
    token: str
    created: str  # what `guestlist admin create` printed


@dataclass
class Person:
    email: str
    user_id: str
    registration: dict[str, Any]  # the answer to POST /v1/users, as it came
    password: str = PASSWORD


async def create_manager(stack: Stack) -> str:
    done = await stack.cli("identity", "admin", "create", "--email", MANAGER_EMAIL,
                           "--password", MANAGER_PASSWORD)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def sign_in(stack: Stack, email: str, password: str) -> httpx.Response:
    async with stack.client("identity") as identity:
        return await identity.post("/v1/sessions", json={"email": email, "password": password})


async def token_for(stack: Stack, email: str, password: str) -> str:
    answer = await sign_in(stack, email, password)
    assert answer.status_code == 201, answer.text
    token = answer.json()["access_token"]
    assert isinstance(token, str)
    return token


def user_id_in(output: str) -> str:
    found = re.search(_UUID, output)
    assert found, f"no user id in {output!r}"
    return found.group(0)


async def invite(
    stack: Stack, walk: Walkthrough, token: str, email: str, **fields: Any
) -> dict[str, Any]:
    async with stack.client("invitations", token) as invitations:
        answer = await invitations.post("/v1/invitations", json={"invitee_email": email, **fields})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return walk.wrote(body["id"], body)


async def register(
    stack: Stack, walk: Walkthrough, email: str, code: str | None, **fields: Any
) -> httpx.Response:
    body = {"email": email, "password": PASSWORD, **fields}
    if code is not None:
        body["invitation_code"] = code
    async with stack.client("identity") as identity:
        answer = await identity.post("/v1/users", json=body)
    if answer.status_code == 201:
        walk.wrote(answer.json()["user_id"], answer.json())
    return answer


async def enrol(
    stack: Stack, walk: Walkthrough, invited: dict[str, Any], name: str
) -> Person:
    """Registered with the invitation's code; the answer is kept as it came."""
    email = invited["invitee_email"]
    answer = await register(stack, walk, email, invited["code"], name=name,
                            locale=invited["locale"])
    assert answer.status_code == 201, answer.text
    return Person(email=email, user_id=answer.json()["user_id"], registration=answer.json())


async def another_organizer(stack: Stack, email: str, password: str) -> Organizer:
    """Support staff with their own account, made by an operator with `admin create --force`."""
    done = await stack.cli("identity", "admin", "create", "--force", "--email", email,
                           "--password", password)
    assert done.returncode == 0, done.stdout + done.stderr
    return Organizer(user_id=user_id_in(done.stdout), token=await token_for(stack, email, password),
                     created=done.stdout)


def assert_problem(answer: httpx.Response, status: int, type_suffix: str) -> dict[str, Any]:
    """A problem document (RFC 9457) of this status whose type ends with `type_suffix`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == status and problem["type"].endswith(type_suffix), problem
    return problem


async def what_other_services_answer(stack: Stack, token: str) -> dict[str, int]:
    """The status every service but identity answers a manager's token with."""
    async with stack.client("projections", token) as projections, \
            stack.client("invitations", token) as invitations, \
            stack.client("notifications", token) as notifications, \
            stack.client("audit", token) as audit:
        async def live_updates() -> int:
            async with projections.stream("GET", "/v1/stream") as answer:  # hangs up at once
                return answer.status_code

        async def status(answering: Awaitable[httpx.Response]) -> int:
            return (await answering).status_code

        statuses = await asyncio.gather(
            live_updates(),
            status(invitations.get(f"/v1/invitations/{uuid.UUID(int=0)}")),  # no such one
            status(notifications.get("/v1/notifications", params={"limit": 1})),
            status(audit.get("/v1/audit/events", params={"limit": 1})),
        )
    return dict(zip(("projections", "invitations", "notifications", "audit"), statuses,
                    strict=True))
