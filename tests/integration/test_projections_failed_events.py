"""Failed events: set aside by a read model, listed for operators, applied again once fixed.

The whole service runs against the session's PostgreSQL and Kafka (and
``guestlist projections failed|retry`` against its database). The
cause of the failure is real and removable: a CHECK constraint an operator
put on the directory's table refuses one locale, so registrations in it
cannot be applied until the constraint is dropped.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from click.testing import Result
from test_projections_directory import Topics, eventually, running_service, user_event
from test_projections_invitations import applied
from typer.testing import CliRunner

from guestlist.projections_cli import projections_app
from schemas.identity import UserEmailConfirmed, UserRegistered

pytestmark = pytest.mark.integration

USERS = '"directory_users_v1"'


async def test_an_event_the_model_cannot_apply_is_listed_and_applied_once_after_the_fix(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    ana, bo, cy = (uuid.uuid4() for _ in range(3))
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        pool = service.app.state.runtime.database.pool
        await eventually(lambda: _exists(service, USERS))
        await pool.execute(f"ALTER TABLE {USERS} ADD CONSTRAINT no_klingon "
                           "CHECK (locale <> 'tlh')")
        events = [
            user_event(UserRegistered(user_id=ana, email="ana@example.org", locale="en"), ana),
            user_event(UserRegistered(user_id=bo, email="bo@example.org", locale="tlh"), bo),
            user_event(UserRegistered(user_id=cy, email="cy@example.org", locale="tlh"), cy),
            user_event(UserEmailConfirmed(user_id=ana), ana),
        ]
        await service.publish(*events)
        await eventually(lambda: applied(service, "directory", len(events)))

        # The model moved on: ana is there, bo and cy are set aside with the reason.
        assert (await service.get(f"/v1/directory/users/{ana}")).json()["user"]["status"] == (
            "active")
        assert (await service.get(f"/v1/directory/users/{bo}")).status_code == 404
        first = await service.get("/v1/projections/directory/failed-events", limit=1)
        assert first.status_code == 200, first.text
        page = first.json()
        assert (page["read_model"], page["version"], len(page["items"])) == ("directory", 1, 1)
        second = (await service.get("/v1/projections/directory/failed-events", limit=1,
                                    cursor=page["next_cursor"])).json()
        assert second["next_cursor"] is None
        failed = {item["event_id"]: item for item in page["items"] + second["items"]}
        bo_event, cy_event = str(events[1].id), str(events[2].id)
        assert set(failed) == {bo_event, cy_event}
        assert failed[bo_event]["event_type"] == "guestlist.identity.UserRegistered.v1"
        assert failed[bo_event]["topic"] == service.topics["identity.user"]
        assert "no_klingon" in failed[bo_event]["error"]
        assert failed[bo_event]["retriable"] is True and failed[bo_event]["retries"] == 0
        assert (await service.get("/v1/projections/security/failed-events")).json()[
            "items"] == []

        # Retried before the fix: still refused, still listed, one retry counted.
        retry_bo = f"/v1/projections/directory/failed-events/{bo_event}/retry"
        operator = service.auth("manage_platform_settings")
        refused = await service.client.post(retry_bo, headers=operator)
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "no_klingon" in refused.json()["error"]
        listed = (await service.get("/v1/projections/directory/failed-events")).json()["items"]
        assert {i["event_id"]: i["retries"] for i in listed} == {bo_event: 1, cy_event: 0}

        # Fixed: two retries at once apply it once; the other finds it gone.
        await pool.execute(f"ALTER TABLE {USERS} DROP CONSTRAINT no_klingon")
        answers = await asyncio.gather(*(service.client.post(retry_bo, headers=operator)
                                         for _ in range(2)))
        assert sorted(a.status_code for a in answers) == [200, 404]
        done = next(a for a in answers if a.status_code == 200).json()
        assert done == {"event_id": bo_event, "outcome": "applied"}
        shown = (await service.get(f"/v1/directory/users/{bo}")).json()["user"]
        assert (shown["status"], shown["locale"]) == ("pending_confirmation", "tlh")
        assert await pool.fetchval(f"SELECT count(*) FROM {USERS} WHERE user_id = $1", bo) == 1
        listed = (await service.get("/v1/projections/directory/failed-events")).json()["items"]
        assert [i["event_id"] for i in listed] == [cy_event]

        # The same from the command line, against the database.
        listing = await cli("failed", "directory", database_url=database_url)
        assert listing.exit_code == 0, listing.output
        assert cy_event in listing.output and bo_event not in listing.output
        retried = await cli("retry", "directory", cy_event, database_url=database_url)
        assert retried.exit_code == 0, retried.output
        assert (await service.get(f"/v1/directory/users/{cy}")).status_code == 200
        again = await cli("retry", "directory", cy_event, database_url=database_url)
        assert again.exit_code == 1 and "not a failed event" in again.output
        assert (await service.get("/v1/projections/directory/failed-events")).json()[
            "items"] == []
        assert (await cli("failed", "nothing", database_url=database_url)).exit_code == 2


async def test_failed_events_refuse_what_they_must(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        await eventually(lambda: _exists(service, USERS))
        path = "/v1/projections/directory/failed-events"
        reader = service.auth("list_person", "read_person", "view_platform_analytics")
        monitor = service.auth("view_platform_logs")
        assert (await service.client.get(path)).status_code == 401
        assert (await service.client.get(path, headers=reader)).status_code == 403
        assert (await service.client.get(path, headers=monitor)).status_code == 200
        some_id = uuid.uuid4()
        retry = f"{path}/{some_id}/retry"
        # Reading the list is not enough to change a read model.
        assert (await service.client.post(retry, headers=monitor)).status_code == 403
        operator = service.auth("manage_platform_settings")
        missing = await service.client.post(retry, headers=operator)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        for bad, field in ((("/v1/projections/nothing/failed-events", {}), "name"),
                           ((path, {"cursor": "!!!"}), "cursor"),
                           ((path, {"limit": "0"}), "limit"),
                           ((path, {"version": "0"}), "version")):
            answer = await service.client.get(bad[0], params=bad[1], headers=monitor)
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["errors"][0]["field"] == field
        no_version = await service.client.get(path, params={"version": 7}, headers=monitor)
        assert no_version.status_code == 404
        not_an_id = await service.client.post(f"{path}/not-a-uuid/retry", headers=operator)
        assert not_an_id.status_code == 422


async def cli(*args: str, database_url: str) -> Result:
    return await asyncio.to_thread(
        CliRunner().invoke, projections_app, [*args, "--database-url", database_url],
        env={"COLUMNS": "300"})


async def _exists(service: object, table: str) -> bool:
    pool = service.app.state.runtime.database.pool  # type: ignore[attr-defined]
    return bool(await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table))
