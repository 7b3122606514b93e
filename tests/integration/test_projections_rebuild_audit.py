"""Rebuilding read models from an audit replay, with the audit service on a real port.

The contract events go onto the domain topics; the audit service logs them
(all but the delivery topic, which its pattern leaves out, so the rebuild must
find those events on the topic itself); each read model is then rebuilt from
the log and must answer as the live model did, and as a rebuild from the
topics does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from test_projections_directory import (
    Service,
    Topics,
    eventually,
    registered,
    running_service,
    service_environment,
    user_event,
)
from test_projections_invitations import MONDAY, applied, history
from test_projections_rebuild import answers, versions
from typer.testing import CliRunner

from eventkit.kafka_client import list_topics
from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.cli import app as cli
from schemas.catalog import build_registry
from schemas.identity import LoginFailed, RoleGranted, UserEmailConfirmed
from services.audit.bootstrap import build_app as build_audit
from services.audit.settings import AuditSettings
from services.projections.audit_replay import AuditReplays
from services.projections.bootstrap import read_models, topics_of
from services.projections.rebuild import rebuild_from_audit

pytestmark = pytest.mark.integration


class _NoKeys:
    async def key_for(self, subject_id: str) -> bytes | None:
        return None


@asynccontextmanager
async def audit_service(
    service: Service, database_url: str, kafka_topics: Topics, tmp_path: Path
) -> AsyncIterator[tuple[str, SigningKey, str]]:
    """The audit service over HTTP logging this test's topics but the delivery topic."""
    prefix = service.topics["identity.user"].split(".")[0]
    access_topic = await kafka_topics("audit.access", 1)
    signing = SigningKey("audit-test")
    group = f"{prefix}-audit"
    async with serve_jwks(signing) as jwks:
        settings = AuditSettings(
            database_url=database_url, kafka_bootstrap=service.bootstrap,
            identity_jwks_url=jwks.url, audit_consumer_group=group,
            audit_topic_pattern=rf"^{prefix}\.(?!notifications\.delivery$)(?!.*\.dlq$)",
            audit_access_topic=access_topic, audit_signing_key_file=tmp_path / "key.pem")
        async with serving(build_audit(settings, keys=_NoKeys())) as url:
            yield url, signing, group


async def _logged(database_url: str, ids: list[uuid.UUID]) -> bool:
    connection = await asyncpg.connect(database_url)
    try:
        return bool(await connection.fetchval(
            "SELECT count(*) FROM audit_log WHERE ce_id = ANY($1::uuid[])", ids) == len(ids))
    finally:
        await connection.close()


@pytest.fixture
async def audit_database(pg_server: Any) -> AsyncIterator[str]:
    """The audit service's own database (its tables are not the projections')."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield await pg_server.create_database(name)
    await pg_server.drop_database(name)


async def test_a_rebuild_from_the_audit_log_answers_as_the_live_model_and_a_topic_rebuild(
    database_url: str, audit_database: str, kafka_bootstrap: str, kafka_topics: Topics,
    tmp_path: Path,
) -> None:
    events, _ = history(300, seed=5)
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service, \
            audit_service(service, audit_database, kafka_topics, tmp_path) as (url, key, group):
        people = [registered(service, address=f"a{n}@example.org",
                             at=MONDAY + timedelta(days=n)) for n in range(15)]
        extra = [user_event(UserEmailConfirmed(user_id=u), u) for _, u in people[:6]]
        extra += [user_event(LoginFailed(user_id=u, failure="wrong_password",
                                         consecutive_failures=1), u) for _, u in people[:5]]
        extra.append(user_event(RoleGranted(user_id=people[1][1], role="platform_developer",
                                            scope="platform"), people[1][1]))
        everything = [*events, *(j for j, _ in people), *extra]
        await service.publish(*everything)
        delivered = [e for e in everything if ".notifications." in e.type]
        logged_ids = [e.id for e in everything if e not in delivered]
        for name in ("directory", "invitations", "security"):
            await eventually(lambda name=name: applied(service, name, len(everything)))
        await eventually(lambda: _logged(audit_database, logged_ids))
        before = await answers(service)

        token = key.mint(sub=str(uuid.uuid4()), permissions=["export_audit_log"])
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        progress: list[tuple[int, int]] = []
        stages: list[str] = []
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                new = await rebuild_from_audit(
                    pool=pool, bootstrap=kafka_bootstrap,
                    models={m.name: m for m in read_models(service.settings)},
                    name="invitations", topics=topics_of(service.settings),
                    group_prefix=service.settings.projections_group_prefix,
                    registry=build_registry(), replays=AuditReplays(client, token=token),
                    audit_group=group, on_progress=lambda d, t: progress.append((d, t)),
                    on_stage=stages.append)
        finally:
            await pool.close()
        env = {"DATABASE_URL": database_url, "KAFKA_BOOTSTRAP": kafka_bootstrap,
               "AUDIT_URL": url, "GUESTLIST_TOKEN": token, "AUDIT_CONSUMER_GROUP": group,
               **service_environment(service.topics)}

        def run(*args: str, **extra_env: str) -> Any:
            return CliRunner().invoke(cli, ["projections", "rebuild", *args],
                                      env={**env, **extra_env})

        refused = {
            "no token": await asyncio.to_thread(run, "directory", "--from-audit",
                                                GUESTLIST_TOKEN=""),
            "not allowed": await asyncio.to_thread(
                run, "directory", "--from-audit", GUESTLIST_TOKEN=key.mint(
                    sub=str(uuid.uuid4()), permissions=["view_audit_log"])),
        }
        unchanged = await versions(service)
        from_audit = [await asyncio.to_thread(run, name, "--from-audit")
                      for name in ("directory", "security")]
        switched = await versions(service)
        await eventually(lambda: _serving(service, switched))
        after_audit = await answers(service)
        from_topics = await asyncio.to_thread(run, "invitations")
        await eventually(lambda: _serving(service, {"invitations": 3}))
        after_topics = await answers(service)
        # The switched versions go on applying new events from the topics.
        late, late_id = registered(service, address="late@example.org")
        await service.publish(late)
        await eventually(lambda: _listed(service, late_id))
        replay_topics = [t for t in await list_topics(kafka_bootstrap)
                         if t.startswith(service.settings.projections_group_prefix)
                         and t.endswith(".replay")]

    assert new == 2
    assert stages == ["replaying invitations from the audit log",
                      "catching up invitations on the topics"]
    # The replay carries the board's events but the deliveries; the topic adds those.
    invitation_events = sum(1 for e in events if ".invitations." in e.type)
    assert progress[0][1] == invitation_events  # the replay's total
    assert progress[-1][0] == progress[-1][1] >= invitation_events + len(delivered)
    assert refused["no token"].exit_code == 2 and "--token" in refused["no token"].output
    assert refused["not allowed"].exit_code == 1
    assert "403" in refused["not allowed"].output
    assert unchanged == {"directory": 1, "invitations": 2, "security": 1}
    for outcome in from_audit:
        assert outcome.exit_code == 0, outcome.output
    # The refused attempt left version 2 of the directory half-made; the next run resumed it.
    assert switched == {"directory": 2, "invitations": 2, "security": 2}
    assert from_topics.exit_code == 0, from_topics.output
    assert after_audit == before
    assert after_topics == before
    assert replay_topics == []  # each dropped after its switch


async def _serving(service: Service, wanted: dict[str, int]) -> bool:
    metrics = (await service.client.get("/metrics")).text
    return all(f'projections_read_model_version{{read_model="{name}"}} {version}.0' in metrics
               for name, version in wanted.items())


async def _listed(service: Service, user_id: uuid.UUID) -> bool:
    return (await service.get(f"/v1/directory/users/{user_id}")).status_code == 200
