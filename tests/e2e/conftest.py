"""One whole Guestlist stack per e2e module, on the session's PostgreSQL and Kafka.

The module's fixtures follow the organizer guide: the first platform manager,
the platform's settings, and Camille, invited in French as a facilitator and
registered with her code. Each is made once per module, whichever test asks first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e_stack import Stack, running_stack
from walkthrough import (
    CAMILLE,
    CAMILLE_GREETING,
    CAMILLE_VALID_UNTIL,
    COLLEAGUES,
    MANAGER_EMAIL,
    MANAGER_PASSWORD,
    PLATFORM,
    Organizer,
    Person,
    Walkthrough,
    another_organizer,
    create_manager,
    enrol,
    invite,
    token_for,
    user_id_in,
)

from guestlist.stack.postgres import ExternalPostgres, PostgresServer


@pytest.fixture(scope="module")
async def stack(
    pg_server: PostgresServer | ExternalPostgres, kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    # pytest keeps the last runs' directories: the services' logs and the mails stay readable.
    async with running_stack(pg_server, kafka_bootstrap, tmp_path_factory.mktemp("e2e")) as started:
        yield started


@pytest.fixture(scope="module")
def walk() -> Walkthrough:
    return Walkthrough()


@pytest.fixture(scope="module")
async def organizer(stack: Stack) -> Organizer:
    created = await create_manager(stack)
    token = await token_for(stack, MANAGER_EMAIL, MANAGER_PASSWORD)
    return Organizer(user_id=user_id_in(created), token=token, created=created)


@pytest.fixture(scope="module")
async def platform(stack: Stack, walk: Walkthrough, organizer: Organizer) -> dict[str, Any]:
    async with stack.client("identity", organizer.token) as identity:
        answer = await identity.put("/v1/platform/settings", json=PLATFORM)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return walk.wrote(body["platform_id"], body)


@pytest.fixture(scope="module")
async def camille_invitation(
    stack: Stack, walk: Walkthrough, organizer: Organizer, platform: dict[str, Any]
) -> dict[str, Any]:
    return await invite(
        stack, walk, organizer.token, CAMILLE, community_role="community_facilitator",
        locale="fr", greeting=CAMILLE_GREETING, valid_until=CAMILLE_VALID_UNTIL,
    )


@pytest.fixture(scope="module")
async def camille(
    stack: Stack, walk: Walkthrough, camille_invitation: dict[str, Any]
) -> tuple[dict[str, Any], Person]:
    return camille_invitation, await enrol(stack, walk, camille_invitation, "Camille Martin")


@pytest.fixture(scope="module")
async def colleagues(stack: Stack, organizer: Organizer) -> dict[str, Organizer]:
    """Two support-staff accounts (active, English), made side by side."""
    made = await asyncio.gather(*(another_organizer(stack, email, password)
                                  for email, password in COLLEAGUES.values()))
    return dict(zip(COLLEAGUES, made, strict=True))
