"""Identity's writes with an Idempotency-Key, on the real PostgreSQL: a retry gets the first
answer and changes nothing; the same key with another body is refused."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from guestlist.stack.smtp_sink import SmtpSink
from services.identity.handlers import PLATFORM_ID
from services.identity.testing import (
    PASSWORD,
    make_admin,
    open_platform,
    register_active,
    running_identity,
)

pytestmark = pytest.mark.integration


async def event_names(app: FastAPI, stream: str) -> Counter[str]:
    work = app.state.identity.accounts.work
    async with work.store.transaction() as tx:
        return Counter(e.envelope.type.split(".")[2] for e in await tx.read_stream(stream))


async def twice(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
    body: dict[str, Any] | None, other_body: dict[str, Any] | None,
) -> tuple[httpx.Response, httpx.Response, httpx.Response | None]:
    """The request, its retry with the same key, and the key reused with ``other_body``."""
    keyed = {**headers, "Idempotency-Key": f"key-{uuid4()}"}
    first = await client.request(method, path, headers=keyed, json=body)
    retry = await client.request(method, path, headers=keyed, json=body)
    reused = None
    if other_body is not None:
        reused = await client.request(method, path, headers=keyed, json=other_body)
    return first, retry, reused


def assert_replayed(first: httpx.Response, retry: httpx.Response,
                    reused: httpx.Response | None) -> None:
    assert first.status_code < 300, first.text
    assert (retry.status_code, retry.json()) == (first.status_code, first.json())
    assert "idempotent-replayed" not in first.headers
    assert retry.headers["idempotent-replayed"] == "true"
    if reused is not None:
        assert reused.status_code == 422, reused.text
        assert reused.json()["type"].endswith("/idempotency-key-reused")


async def test_retried_writes_answer_the_first_answer_and_write_once(
    database_url: str, kafka_bootstrap: str, smtp_sink: SmtpSink
) -> None:
    async with running_identity(database_url, kafka_bootstrap,
                                smtp_port=smtp_sink.port) as (client, app):
        admin = await make_admin(app, client)
        settings = {"name": "Open", "requires_invitation": False, "time_zone": "UTC",
                    "default_locale": "en", "dormant_after_days": 90}
        assert_replayed(*await twice(client, "PUT", "/v1/platform/settings", admin, settings,
                                     {**settings, "name": "Closed"}))
        await open_platform(client, admin)

        address = f"lin-{uuid4().hex[:8]}@example.org"
        registration = {"email": address, "password": PASSWORD, "name": "Lin"}
        first, retry, reused = await twice(client, "POST", "/v1/users", {}, registration,
                                           {**registration, "name": "Other"})
        assert_replayed(first, retry, reused)
        assert first.status_code == 201
        new_user = first.json()["user_id"]
        # The replay made no second account: one confirmation token (delivery key) only.
        keys = await app.state.identity.accounts.work.store.pool.fetchval(
            "SELECT count(*) FROM delivery_keys WHERE user_id = $1", UUID(new_user))
        assert keys == 1

        user_id, _ = await register_active(client, app)
        base = f"/v1/users/{user_id}"
        assert_replayed(*await twice(client, "PATCH", base, admin, {"name": "Ada"},
                                     {"name": "Ade"}))
        assert_replayed(*await twice(client, "POST", f"{base}/roles", admin,
                                     {"role": "platform_developer", "scope": "platform"},
                                     {"role": "platform_tech_support", "scope": "platform"}))
        assert_replayed(*await twice(client, "DELETE", f"{base}/roles/platform/platform_developer",
                                     admin, None, None))
        assert_replayed(*await twice(client, "POST", f"{base}/suspend", admin,
                                     {"reason": "spam"}, {"reason": "other"}))
        assert_replayed(*await twice(client, "POST", f"{base}/reactivate", admin, None, None))
        first, retry, reused = await twice(client, "DELETE", base, admin, {"reason": "asked"},
                                           {"reason": "changed my mind"})
        assert_replayed(first, retry, reused)
        assert retry.json()["status"] == "deleted"

        # Another person's request with a used key is not the same request.
        other_id, _ = await register_active(client, app)
        keyed = {**admin, "Idempotency-Key": "shared-key"}
        await client.post(f"/v1/users/{other_id}/suspend", headers=keyed, json={"reason": "x"})
        other_admin = await make_admin(app, client)
        stolen = await client.post(f"/v1/users/{other_id}/suspend",
                                   headers={**other_admin, "Idempotency-Key": "shared-key"},
                                   json={"reason": "x"})
        bad_key = await client.patch(base, headers={**admin, "Idempotency-Key": "two words"},
                                     json={"name": "Ada"})

        user_events = await event_names(app, user_id)
        platform = await event_names(app, str(PLATFORM_ID))
        registered = await event_names(app, new_user)

    assert registered["UserRegistered"] == 1
    assert user_events["UserProfileUpdated"] == 1
    assert user_events["RoleGranted"] == 2  # the default community role and the one granted
    assert user_events["RoleRevoked"] == 1
    assert user_events["UserSuspended"] == 1 and user_events["UserReactivated"] == 1
    assert user_events["UserDeleted"] == 1
    assert platform == Counter({"PlatformSettingsChanged": 2})  # the keyed one, open_platform
    assert stolen.status_code == 422
    assert bad_key.status_code == 400
    assert bad_key.json()["type"].endswith("/invalid-idempotency-key")
