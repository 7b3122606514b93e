"""The user directory over HTTP, fed by identity's and invitations' contract events on Kafka.

The whole service runs (read-model consumers, relay, HTTP) against the
session's PostgreSQL and Kafka on topics of this test. Personal fields are
encrypted as identity writes them and opened with keys from an in-memory
resolver; a test erases a person by dropping the key, as identity does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from eventkit.envelope import Envelope, encode_data
from eventkit.kafka_client import ensure_topics
from eventkit.personal_data import encrypt_event, new_data_key
from eventkit.position import position_of_id
from eventkit.publisher import KafkaPublisher
from eventkit.registry import EventData
from eventkit.testing.kafka import read_topic
from eventkit.testing.server import serving
from eventkit.testing.tokens import SigningKey, serve_jwks
from schemas.catalog import build_registry
from schemas.identity import (
    LoginSucceeded,
    RoleGranted,
    UserDeleted,
    UserEmailConfirmed,
    UserRegistered,
    UserSuspended,
)
from schemas.invitations import InvitationCreated
from services.projections.bootstrap import build_app
from services.projections.settings import ProjectionsSettings

pytestmark = pytest.mark.integration

TIMEOUT = 90.0
REGISTRY = build_registry()
Topics = Callable[..., Awaitable[str]]
TOPIC_NAMES = ("identity.user", "identity.platform", "invitations.invitation",
               "notifications.delivery")
EVERYONE = ["list_person", "read_person", "view_platform_analytics", "manage_invitations",
            "view_platform_logs"]


class MemoryKeys:
    """identity's (or invitations') key service as a test plays it: erasure drops a key."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def key(self, subject: str) -> bytes:
        return self.keys.setdefault(subject, new_data_key())

    async def key_for(self, subject_id: str) -> bytes | None:
        return self.keys.get(subject_id)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    signing: SigningKey
    identity_keys: MemoryKeys
    invitation_keys: MemoryKeys
    topics: dict[str, str]
    bootstrap: str
    settings: ProjectionsSettings
    manager_id: UUID

    def auth(self, *permissions: str, subject: UUID | None = None) -> dict[str, str]:
        token = self.signing.mint(sub=str(subject or self.manager_id),
                                  permissions=list(permissions or EVERYONE))
        return {"Authorization": f"Bearer {token}"}

    async def publish(self, *envelopes: Envelope) -> None:
        publisher = KafkaPublisher(self.bootstrap)
        await publisher.start()
        try:
            await publisher.publish([
                e.to_kafka(self.topics[REGISTRY.topic_of(e.type)]) for e in envelopes])
        finally:
            await publisher.stop()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return list(await self.app.state.runtime.database.pool.fetch(query, *args))

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth())


def envelope(event: EventData, subject: str, *, at: datetime | None = None,
             actor: str = "system") -> Envelope:
    return Envelope(id=uuid.uuid4(), type=str(type(event).event_type), subject=subject,
                    time=at or datetime.now(UTC), actor_id=actor, sequence=1,
                    data_json=encode_data(json.loads(REGISTRY.encode(event))))


def registered(service: Service, *, address: str, name: str | None = None,
               at: datetime | None = None, via: UUID | None = None) -> tuple[Envelope, UUID]:
    user_id = uuid.uuid4()
    key = service.identity_keys.key(str(user_id))
    event = UserRegistered(user_id=user_id, email=address, name=name, locale="en",
                           via_invitation_id=via)
    sealed = encrypt_event(event, subject_id=str(user_id), key=key)
    return envelope(sealed, str(user_id), at=at), user_id


def user_event(event: EventData, user_id: UUID, *, at: datetime | None = None) -> Envelope:
    return envelope(event, str(user_id), at=at)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def make_topics(kafka_topics: Topics) -> dict[str, str]:
    topics = {name: await kafka_topics(name) for name in TOPIC_NAMES}
    topics["projections.access"] = await kafka_topics("projections.access", 1)
    return topics


def service_environment(topics: dict[str, str]) -> dict[str, str]:
    """The variables that point a projections service (or its CLI) at this test's topics."""
    prefix = topics["identity.user"].split(".")[0]
    return {"PROJECTIONS_GROUP_PREFIX": f"{prefix}-projections",
            "USER_TOPIC": topics["identity.user"], "PLATFORM_TOPIC": topics["identity.platform"],
            "INVITATION_TOPIC": topics["invitations.invitation"],
            "DELIVERY_TOPIC": topics["notifications.delivery"],
            "ACCESS_TOPIC": topics["projections.access"]}


@asynccontextmanager
async def running_service(
    *, database_url: str, kafka_bootstrap: str, kafka_topics: Topics, over_http: bool = False,
    topics: dict[str, str] | None = None, **overrides: Any,
) -> AsyncIterator[Service]:
    topics = topics or await make_topics(kafka_topics)
    prefix = topics["identity.user"].split(".")[0]
    signing = SigningKey("test-key")
    identity_keys, invitation_keys = MemoryKeys(), MemoryKeys()
    async with serve_jwks(signing) as jwks:
        settings = ProjectionsSettings(
            database_url=database_url, kafka_bootstrap=kafka_bootstrap,
            identity_jwks_url=jwks.url, projections_group_prefix=f"{prefix}-projections",
            user_topic=topics["identity.user"], platform_topic=topics["identity.platform"],
            invitation_topic=topics["invitations.invitation"],
            delivery_topic=topics["notifications.delivery"],
            access_topic=topics["projections.access"], version_poll_seconds=0.2,
            **overrides)
        await ensure_topics(kafka_bootstrap, [f"{prefix}-projections.{m}.v{v}.dlq"
                                              for m in ("directory", "invitations", "security")
                                              for v in (1, 2)],
                            partitions=1, replication_factor=1)
        app = build_app(settings, keys={"identity": identity_keys,
                                        "invitations": invitation_keys})
        async with _serving(app, over_http) as client:
            service = Service(app=app, client=client, signing=signing,
                              identity_keys=identity_keys, invitation_keys=invitation_keys,
                              topics=topics, bootstrap=kafka_bootstrap, settings=settings,
                              manager_id=uuid.uuid4())
            yield service


@asynccontextmanager
async def _serving(app: FastAPI, over_http: bool) -> AsyncIterator[httpx.AsyncClient]:
    """In process (ASGI), or in uvicorn on a real port where responses must stream (SSE)."""
    if not over_http:
        async with LifespanManager(app, startup_timeout=TIMEOUT, shutdown_timeout=TIMEOUT), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://projections", timeout=TIMEOUT) as client:
            yield client
        return
    async with serving(app, start_within=TIMEOUT) as base_url, \
            httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        yield client


async def test_the_directory_shows_people_with_roles_status_and_inviter_and_audits_each_view(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    community = uuid.uuid4()
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        inviter, invitation_id = uuid.uuid4(), uuid.uuid4()
        ana_joined, ana = registered(service, address="ana@example.org", name="Ana Lima",
                                     via=invitation_id)
        bo_joined, bo = registered(service, address="bo@example.org", at=long_ago)
        cy_joined, cy = registered(service, address="cy@example.org", name="Cy")
        invitation_key = service.invitation_keys.key(str(invitation_id))
        invited = envelope(encrypt_event(InvitationCreated(
            invitation_id=invitation_id, invitee_email="ana@example.org", inviter_id=inviter,
            locale="en", valid_from=long_ago, valid_until=datetime.now(UTC) + timedelta(days=9),
            code_hash="ab" * 32), subject_id=str(invitation_id), key=invitation_key),
            str(invitation_id))
        last = user_event(UserDeleted(user_id=cy), cy)
        ana_last = user_event(LoginSucceeded(user_id=ana, session_id=uuid.uuid4(),
                                             expires_at=datetime.now(UTC) + timedelta(hours=1)),
                              ana)
        bo_last = user_event(UserSuspended(user_id=bo, reason="Spam"), bo)
        # The registration comes before the invitation it names (another topic): both orders work.
        await service.publish(
            ana_joined, bo_joined, cy_joined,
            user_event(UserEmailConfirmed(user_id=ana), ana),
            user_event(RoleGranted(user_id=ana, role="community_facilitator", scope="community",
                                   community_id=community, granted_by=inviter), ana),
            user_event(RoleGranted(user_id=ana, role="platform_tech_support", scope="platform",
                                   granted_by=inviter, privilege_escalation=True), ana),
            ana_last, bo_last, invited, last,
        )
        # A position covers its own event only: people live on other partitions, so
        # reach each one's last event before reading everyone at the last position.
        for earlier in (ana_last, bo_last):
            reached = await service.client.get(
                "/v1/directory/users",
                # A search that matches nobody waits like any read but shows (and audits) no one.
                params={"min_position": position_of_id(earlier.id), "q": "nobody-at-all"},
                headers=service.auth())
            assert reached.json()["consistency"]["reached"] is True
        token = position_of_id(last.id)
        everyone = await service.client.get(
            "/v1/directory/users", params={"min_position": token, "limit": 10},
            headers=service.auth())
        await eventually(lambda: _inviter_known(service, ana))
        one = await service.get(f"/v1/directory/users/{ana}")
        facilitators = await service.get("/v1/directory/users", role="community_facilitator",
                                         community_id=str(community))
        platform_staff = await service.get("/v1/directory/users", scope="platform")
        suspended = await service.get("/v1/directory/users", status="suspended")
        dormant = await service.get("/v1/directory/users", inactive_days=300)
        searched = await service.get("/v1/directory/users", q="LIMA")
        oldest_first = await service.get("/v1/directory/users", sort="registered_at", limit=2)
        second = await service.get("/v1/directory/users", sort="registered_at", limit=2,
                                   cursor=oldest_first.json()["next_cursor"])
        by_header = await service.client.get("/v1/directory/users", headers={
            **service.auth(), "X-Min-Position": token})
        seen = await read_topic(kafka_bootstrap, service.topics["projections.access"], 12)

    body = everyone.json()
    assert everyone.status_code == 200, everyone.text
    assert body["consistency"]["reached"] is True and body["consistency"]["version"] == 1
    assert everyone.headers["X-Min-Position-Reached"] == "true"
    assert everyone.headers["X-Position"] == body["consistency"]["position"]
    by_id = {item["user_id"]: item for item in body["items"]}
    assert set(by_id) == {str(ana), str(bo), str(cy)}
    assert by_id[str(ana)]["email"] == "ana@example.org" and by_id[str(ana)]["name"] == "Ana Lima"
    assert by_id[str(ana)]["status"] == "active"
    assert by_id[str(ana)]["platform_roles"] == ["platform_tech_support"]
    assert by_id[str(ana)]["community_roles"] == [
        {"role": "community_facilitator", "community_id": str(community)}]
    assert by_id[str(ana)]["registration_route"] == "invitation"
    assert by_id[str(ana)]["last_sign_in_at"] is not None
    assert by_id[str(bo)]["status"] == "suspended" and by_id[str(bo)]["name"] is None
    assert by_id[str(bo)]["registration_route"] == "public"
    assert by_id[str(cy)]["status"] == "deleted"
    assert by_id[str(cy)]["email"] == "[erased]" and by_id[str(cy)]["name"] == "[erased]"
    assert one.json()["user"]["invited_by"] == str(inviter)
    assert [i["user_id"] for i in facilitators.json()["items"]] == [str(ana)]
    assert [i["user_id"] for i in platform_staff.json()["items"]] == [str(ana)]
    assert [i["user_id"] for i in suspended.json()["items"]] == [str(bo)]
    assert [i["user_id"] for i in dormant.json()["items"]] == [str(bo)]
    assert [i["user_id"] for i in searched.json()["items"]] == [str(ana)]
    pages = [i["user_id"] for i in oldest_first.json()["items"] + second.json()["items"]]
    assert pages[0] == str(bo) and sorted(pages) == sorted(map(str, (ana, bo, cy)))
    assert second.json()["next_cursor"] is None
    assert by_header.headers["X-Min-Position-Reached"] == "true"
    # Every response that showed Ana's or Bo's data left one PersonalDataViewed per person;
    # Cy's erased record revealed nothing, so none for Cy.
    viewed = [json.loads(e.data_json) for e in seen]
    assert all(e.type == "guestlist.projections.PersonalDataViewed.v1" for e in seen)
    subjects = [v["subject_id"] for v in viewed]
    assert str(cy) not in subjects
    assert subjects.count(str(ana)) == 7 and subjects.count(str(bo)) == 5
    assert {v["actor_id"] for v in viewed} == {str(service.manager_id)}
    ana_views = [v for v in viewed if v["subject_id"] == str(ana)]
    assert {tuple(v["fields"]) for v in ana_views} == {("email", "name")}
    assert {v["endpoint"] for v in ana_views} == {
        "GET /v1/directory/users", "GET /v1/directory/users/{user_id}"}


async def _inviter_known(service: Service, user_id: UUID) -> bool:
    # Straight from the table: a look through the API would itself be an audited view.
    rows = await service.fetch(
        "SELECT i.inviter_id FROM directory_users_v1 u JOIN directory_inviters_v1 i "
        "ON i.invitation_id = u.via_invitation_id WHERE u.user_id = $1", user_id)
    return bool(rows)


async def test_permissions_bad_input_and_operations(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics, read_wait_seconds=0.3) as service:
        joined, someone = registered(service, address="dee@example.org")
        other, _ = registered(service, address="eli@example.org")
        await service.publish(joined, other)
        await eventually(lambda: _listed(service, 2))
        no_token = await service.client.get("/v1/directory/users")
        reader_only = await service.client.get("/v1/directory/users",
                                               headers=service.auth("read_person"))
        lister_only = await service.client.get(f"/v1/directory/users/{someone}",
                                               headers=service.auth("list_person"))
        bad = {name: await service.get("/v1/directory/users", **{name: value}) for name, value in (
            ("status", "gone"), ("role", "king"), ("scope", "planet"), ("community_id", "x"),
            ("registered_from", "yesterday"), ("inactive_days", -1), ("sort", "email"),
            ("cursor", "nope"), ("limit", 0), ("min_position", "p2.zzz"), ("q", ""))}
        backwards = await service.get("/v1/directory/users",
                                      registered_from="2030-01-01T00:00:00Z",
                                      registered_to="2029-01-01T00:00:00Z")
        other_sort = await service.get("/v1/directory/users", sort="last_active_at", limit=1)
        wrong_cursor = await service.get("/v1/directory/users", sort="registered_at",
                                         cursor=_any_cursor(other_sort))
        unknown = await service.get(f"/v1/directory/users/{uuid.uuid4()}")
        not_yet = await service.get("/v1/directory/users",
                                    min_position=position_of_id(uuid.uuid4()))
        ready = await service.client.get("/readyz")
        metrics = await service.client.get("/metrics")

    assert no_token.status_code == 401
    assert reader_only.status_code == 403 and "list_person" in reader_only.text
    assert lister_only.status_code == 403 and "read_person" in lister_only.text
    for name, response in bad.items():
        assert response.status_code == 422, (name, response.text)
        assert name in response.json()["detail"], (name, response.text)
    assert backwards.status_code == 422 and "registered_to" in backwards.text
    assert wrong_cursor.status_code == 422 and "cursor" in wrong_cursor.text
    assert unknown.status_code == 404
    # An event the read model never saw: the read answers after the bound and says so.
    assert not_yet.status_code == 200 and not_yet.headers["X-Min-Position-Reached"] == "false"
    assert not_yet.json()["consistency"]["reached"] is False
    checks = {c["name"]: c for c in ready.json()["checks"]}
    assert checks["read model directory"]["ok"] is True
    assert "version 1" in checks["read model directory"]["detail"]
    assert 'projections_read_model_lag{read_model="directory"}' in metrics.text
    assert 'projections_read_model_version{read_model="directory"} 1.0' in metrics.text


def _any_cursor(response: httpx.Response) -> str:
    cursor = response.json()["next_cursor"]
    assert cursor, response.text
    return str(cursor)


async def _listed(service: Service, count: int) -> bool:
    response = await service.get("/v1/directory/users")
    return response.status_code == 200 and len(response.json()["items"]) == count
