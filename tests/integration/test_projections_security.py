"""The security monitor over HTTP, live changes over Server-Sent Events, and CORS."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_projections_directory import Topics, eventually, running_service, user_event
from test_projections_invitations import applied

from schemas.identity import LoginFailed, LoginSucceeded, RoleGranted, UserLockedOut

pytestmark = pytest.mark.integration

H1, H2 = "a1" * 32, "b2" * 32


def failed(user_id: uuid.UUID, at: datetime, client: str, n: int = 1) -> Any:
    return user_event(LoginFailed(user_id=user_id, failure="wrong_password",
                                  consecutive_failures=n, client_address_hash=client),
                      user_id, at=at)


async def test_windows_lockouts_takeovers_and_escalations(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    now = datetime.now(UTC)
    ana, bo, cy, manager = (uuid.uuid4() for _ in range(4))
    events = [
        failed(ana, now - timedelta(hours=2), H1), failed(ana, now - timedelta(hours=2), H2),
        *(failed(ana, now - timedelta(minutes=10 - n), H1, n + 1) for n in range(6)),
        user_event(LoginSucceeded(user_id=ana, session_id=uuid.uuid4(),
                                  expires_at=now + timedelta(hours=1)), ana,
                   at=now - timedelta(minutes=3)),
        failed(bo, now - timedelta(minutes=20), H2), failed(bo, now - timedelta(minutes=19), H2),
        user_event(UserLockedOut(user_id=bo, until=now + timedelta(minutes=10),
                                 failed_attempts=2), bo, at=now - timedelta(minutes=19)),
        # Two failures then a success: below the threshold, no takeover suspected.
        user_event(LoginSucceeded(user_id=bo, session_id=uuid.uuid4(),
                                  expires_at=now + timedelta(hours=1)), bo,
                   at=now - timedelta(minutes=18)),
        user_event(RoleGranted(user_id=cy, role="platform_manager", scope="platform",
                               granted_by=manager, privilege_escalation=True), cy,
                   at=now - timedelta(minutes=5)),
        user_event(RoleGranted(user_id=cy, role="community_member", scope="community",
                               community_id=uuid.uuid4()), cy, at=now - timedelta(minutes=5)),
    ]
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        await service.publish(*events)
        await eventually(lambda: applied(service, "security", len(events)))
        hour = (await service.get("/v1/security/summary", window_seconds=3600)).json()
        three = (await service.get("/v1/security/summary", window_seconds=3 * 3600)).json()
        earlier = (await service.get("/v1/security/summary", window_seconds=600,
                                     at=(now - timedelta(minutes=15)).isoformat())).json()
        first = (await service.get("/v1/security/events", kind="login_failed",
                                   user_id=str(ana), limit=5)).json()
        rest = (await service.get("/v1/security/events", kind="login_failed",
                                  user_id=str(ana), limit=5, cursor=first["next_cursor"])).json()
        by_client = (await service.get("/v1/security/events", client_address_hash=H2)).json()
        forbidden = await service.client.get("/v1/security/summary",
                                             headers=service.auth("list_person"))
        bad = {name: await service.get(path, **{name: value}) for path, name, value in (
            ("/v1/security/summary", "window_seconds", 0),
            ("/v1/security/summary", "at", "soon"),
            ("/v1/security/events", "kind", "sneezed"),
            ("/v1/security/events", "client_address_hash", "1.2.3.4"))}

    assert hour["failed_sign_ins"] == 8
    assert hour["failed_by_account"] == [{"user_id": str(ana), "count": 6},
                                         {"user_id": str(bo), "count": 2}]
    assert hour["failed_by_client"] == [{"client_address_hash": H1, "count": 6},
                                        {"client_address_hash": H2, "count": 2}]
    assert hour["lockouts"] == 1
    [takeover] = hour["takeovers_suspected"]
    assert takeover["user_id"] == str(ana) and takeover["detail"]["failures"] == 6
    [escalation] = hour["privilege_escalations"]
    assert escalation["user_id"] == str(cy) and escalation["actor_id"] == str(manager)
    assert escalation["detail"] == {"role": "platform_manager"}
    assert three["failed_sign_ins"] == 10
    assert {c["client_address_hash"]: c["count"] for c in three["failed_by_client"]} == {
        H1: 7, H2: 3}
    # The window slides: ten minutes ending a quarter of an hour ago hold only Bo's failures.
    assert earlier["failed_sign_ins"] == 2 and earlier["lockouts"] == 1
    assert earlier["takeovers_suspected"] == []
    assert len(first["items"]) == 5 and len(rest["items"]) == 3 and rest["next_cursor"] is None
    times = [i["occurred_at"] for i in first["items"] + rest["items"]]
    assert times == sorted(times, reverse=True)
    assert len(by_client["items"]) == 3
    assert forbidden.status_code == 403 and "view_platform_logs" in forbidden.text
    for name, response in bad.items():
        assert response.status_code == 422 and name in response.json()["detail"], name


async def test_a_dashboard_hears_changes_of_the_read_models_it_follows_across_origins(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    origin = "https://dashboard.example"
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics, over_http=True,
                               cors_origins=[origin]) as service:
        user_id = uuid.uuid4()
        heard: list[dict[str, Any]] = []
        lines: list[str] = []

        async def listen() -> None:
            async with service.client.stream(
                "GET", "/v1/stream", params={"read_model": "security"},
                headers={**service.auth("view_platform_logs"), "Origin": origin},
            ) as response:
                lines.append(response.headers["content-type"])
                lines.append(response.headers.get("access-control-allow-origin", ""))
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line.startswith("data: "):
                        heard.append(json.loads(line[len("data: "):]))
                        return

        listening = asyncio.create_task(listen())
        await eventually(lambda: _started(lines))
        await service.publish(failed(user_id, datetime.now(UTC), H1))
        async with asyncio.timeout(60):
            await listening
        preflight = await service.client.options("/v1/directory/users", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,x-min-position"})
        read = await service.client.get("/v1/security/events",
                                        headers={**service.auth(), "Origin": origin})
        stranger = await service.client.get("/v1/security/events",
                                            headers={**service.auth(), "Origin": "https://x.example"})

    assert lines[0].startswith("text/event-stream") and lines[1] == origin
    assert "event: change" in lines
    assert heard[0]["read_model"] == "security" and heard[0]["version"] == 1
    assert heard[0]["position"].startswith("p1.")
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    exposed = read.headers["access-control-expose-headers"]
    assert "X-Position" in exposed and "X-Read-Model-Version" in exposed
    assert "access-control-allow-origin" not in stranger.headers


async def _started(lines: list[str]) -> bool:
    return ": listening" in lines
