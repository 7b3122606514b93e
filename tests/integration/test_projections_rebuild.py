"""Rebuilding read models while they serve, and a projector killed in the middle of a stream.

A rebuild must give the same answers as the version it replaces; a projector
killed with SIGKILL and started again must neither lose an event nor count
one twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from test_projections_directory import (
    Service,
    Topics,
    eventually,
    make_topics,
    registered,
    running_service,
    service_environment,
    user_event,
)
from test_projections_invitations import MONDAY, applied, expected_figures, history
from typer.testing import CliRunner

from eventkit.kafka_client import ensure_topics
from eventkit.publisher import KafkaPublisher
from guestlist.cli import app as cli
from guestlist.stack.ports import free_port
from schemas.catalog import build_registry
from schemas.identity import LoginFailed, RoleGranted, UserEmailConfirmed
from services.projections.bootstrap import read_models, topics_of
from services.projections.rebuild import rebuild

pytestmark = pytest.mark.integration
WINDOW = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=120)).isoformat()}


async def answers(service: Service) -> dict[str, Any]:
    """What the dashboards see, without the consistency block (its version changes)."""
    found = {}
    for path, params in (("/v1/analytics/invitations", WINDOW),
                         ("/v1/analytics/registrations", {**WINDOW, "bucket": "day"}),
                         ("/v1/directory/users", {"limit": 200}),
                         ("/v1/invitations", {"limit": 200}),
                         ("/v1/security/summary", {"window_seconds": 86400 * 90})):
        body = (await service.get(path, **params)).json()
        body.pop("consistency")
        body.pop("window_end", None), body.pop("window_start", None)
        found[path] = body
    return found


async def versions(service: Service) -> dict[str, int]:
    rows = await service.fetch("SELECT name, active_version FROM read_models")
    return {row["name"]: row["active_version"] for row in rows}


async def test_a_rebuild_fills_the_next_version_while_serving_and_answers_the_same(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    events, _ = history(400, seed=3)
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        people = [registered(service, address=f"r{n}@example.org",
                             at=MONDAY + timedelta(days=n)) for n in range(20)]
        extra = [user_event(UserEmailConfirmed(user_id=u), u) for _, u in people[:7]]
        extra += [user_event(LoginFailed(user_id=u, failure="wrong_password",
                                         consecutive_failures=1), u) for _, u in people[:4]]
        extra.append(user_event(RoleGranted(user_id=people[0][1], role="platform_developer",
                                            scope="platform"), people[0][1]))
        everything = [*events, *(j for j, _ in people), *extra]
        await service.publish(*everything)
        for name in ("directory", "invitations", "security"):
            await eventually(lambda name=name: applied(service, name, len(everything)))
        before = await answers(service)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        progress: list[tuple[int, int]] = []
        try:
            models = {m.name: m for m in read_models(service.settings)}
            new = await rebuild(
                pool=pool, bootstrap=kafka_bootstrap, models=models, name="invitations",
                topics=topics_of(service.settings),
                group_prefix=service.settings.projections_group_prefix,
                registry=build_registry(), on_progress=lambda d, t: progress.append((d, t)))
        finally:
            await pool.close()
        env = {"DATABASE_URL": database_url, "KAFKA_BOOTSTRAP": kafka_bootstrap,
               **service_environment(service.topics)}
        outcomes = [await asyncio.to_thread(CliRunner().invoke, cli,
                                            ["projections", "rebuild", name], env=env)
                    for name in ("directory", "security", "security")]
        unknown = await asyncio.to_thread(CliRunner().invoke, cli,
                                          ["projections", "rebuild", "nope"], env=env)
        switched = await versions(service)
        await eventually(lambda: _serving(service, switched))
        after = await answers(service)
        # The switched versions go on applying new events.
        late, late_id = registered(service, address="late@example.org")
        await service.publish(late)
        await eventually(lambda: _listed(service, late_id))
        kept = await service.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'security_events_v%' "
            "ORDER BY 1")

    assert new == 2 and switched == {"directory": 2, "invitations": 2, "security": 3}
    for outcome in outcomes:
        assert outcome.exit_code == 0, outcome.output
    assert "version 2 now answers reads" in outcomes[0].output
    assert unknown.exit_code == 1 and "no read model 'nope'" in unknown.output
    assert progress[-1][0] == progress[-1][1] >= len(everything)
    assert after == before
    assert [row["tablename"] for row in kept] == ["security_events_v2", "security_events_v3"]


async def test_a_rebuild_sees_its_end_when_its_last_batch_commits_not_at_its_next_poll(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        people = [registered(service, address=f"p{n}@example.org") for n in range(30)]
        await service.publish(*(event for event, _ in people))
        await eventually(lambda: _listed(service, people[-1][1]))
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        progress: list[tuple[int, int]] = []
        try:
            # The first check finds nothing applied yet; only a committed batch's wake-up
            # can end the wait before the minute is over.
            async with asyncio.timeout(30):
                new = await rebuild(
                    pool=pool, bootstrap=kafka_bootstrap,
                    models={m.name: m for m in read_models(service.settings)},
                    name="directory", topics=topics_of(service.settings),
                    group_prefix=service.settings.projections_group_prefix,
                    registry=build_registry(), on_progress=lambda d, t: progress.append((d, t)),
                    poll=60.0)
        finally:
            await pool.close()
        switched = await versions(service)

    assert new == 2 and switched["directory"] == 2
    assert progress[0][0] < progress[0][1] and progress[-1][0] == progress[-1][1] >= 30


async def _serving(service: Service, wanted: dict[str, int]) -> bool:
    response = await service.get("/v1/directory/users", limit=1)
    metrics = (await service.client.get("/metrics")).text
    return response.json()["consistency"]["version"] == wanted["directory"] and all(
        f'projections_read_model_version{{read_model="{name}"}} {version}.0' in metrics
        for name, version in wanted.items())


async def _listed(service: Service, user_id: uuid.UUID) -> bool:
    return (await service.get(f"/v1/directory/users/{user_id}")).status_code == 200


async def test_a_projector_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    events, facts = history(3000, seed=11)
    topics = await make_topics(kafka_topics)
    environment = {**os.environ, **service_environment(topics), "DATABASE_URL": database_url,
                   "KAFKA_BOOTSTRAP": kafka_bootstrap, "HTTP_PORT": str(free_port()),
                   "LOG_LEVEL": "WARNING"}
    prefix = service_environment(topics)["PROJECTIONS_GROUP_PREFIX"]
    await ensure_topics(kafka_bootstrap, [f"{prefix}.{m}.v1.dlq" for m in
                                          ("directory", "invitations", "security")],
                        partitions=1, replication_factor=1)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.projections", env=environment,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        connection = await asyncpg.connect(database_url)
        try:
            await eventually(lambda: _has_table(connection))
            publisher = KafkaPublisher(kafka_bootstrap)
            await publisher.start()
            try:
                await publisher.publish([e.to_kafka(topics["invitations.invitation"])
                                         for e in events])
            finally:
                await publisher.stop()

            async def part_way() -> bool:
                n = await connection.fetchval(
                    "SELECT coalesce(sum(events_applied), 0) FROM read_model_checkpoints "
                    "WHERE name = 'invitations'")
                return bool(0 < n < len(events))

            await eventually(part_way, timeout=120)
        finally:
            await connection.close()
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    start, end = MONDAY, MONDAY + timedelta(days=120)
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics, topics=topics) as service:
        await eventually(lambda: applied(service, "invitations", len(events)), timeout=180)
        got = (await service.get("/v1/analytics/invitations",
                                 **{"from": start.isoformat(), "to": end.isoformat()})).json()
        counted = await service.fetch(
            "SELECT sum(events_applied) AS n FROM read_model_checkpoints "
            "WHERE name = 'invitations'")
        board = await service.fetch("SELECT count(*) AS n FROM invitations_board_v1")

    want = expected_figures(facts, start, end)
    assert counted[0]["n"] == len(events)  # each event applied exactly once across the kill
    assert board[0]["n"] == 3000
    assert got["overall"]["sent"] == want["sent"] == 3000
    for outcome in ("accepted", "expired", "revoked", "pending"):
        assert got["overall"][outcome] == want["outcomes"][outcome], outcome
    assert got["overall"]["median_seconds_to_accept"] == pytest.approx(want["median"])


async def _has_table(connection: asyncpg.Connection[Any]) -> bool:
    try:
        return bool(await connection.fetchval(
            "SELECT count(*) FROM read_models WHERE name = 'invitations'"))
    except asyncpg.UndefinedTableError:
        return False

