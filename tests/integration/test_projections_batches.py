"""Read models give the same tables however the events are cut into batches.

A projection gets a whole batch and writes it with a few set-based
statements; a rebuild, a restart or the inbox going one by one cuts the same
events differently. Here one history covering every rule of the directory and
the security monitor is applied to real PostgreSQL as one batch, one event
per batch and in random cuts, into separate versions, and the tables must be
identical and hold what the rules say.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from eventkit.envelope import Envelope, encode_data
from eventkit.registry import EventData
from schemas.catalog import build_registry
from schemas.identity import (
    LoginFailed,
    LoginSucceeded,
    RoleGranted,
    RoleRevoked,
    UserDeleted,
    UserDeletionRequested,
    UserEmailConfirmed,
    UserLockedOut,
    UserProfileUpdated,
    UserReactivated,
    UserRegistered,
    UserSuspended,
)
from schemas.invitations import InvitationCreated
from services.projections import directory, security_monitor
from services.projections.readmodels import Change, ReadModel, Tables, create_version

pytestmark = pytest.mark.integration

REGISTRY = build_registry()
T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
ANA, BO, CY, GHOST, ADMIN, HELPER = (uuid.uuid4() for _ in range(6))
GARDEN, KITCHEN, INVITATION = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
H1 = "a1" * 32


def change(event: EventData, minutes: float) -> Change:
    envelope = Envelope(id=uuid.uuid4(), type=str(type(event).event_type),
                        subject=str(getattr(event, "user_id", INVITATION)),
                        time=T0 + timedelta(minutes=minutes), actor_id="system", sequence=1,
                        data_json=encode_data(json.loads(REGISTRY.encode(event))))
    return Change(envelope, event)


def directory_history() -> list[Change]:
    return [
        change(UserRegistered(user_id=ANA, email="pd1:ana", name="Ana", locale="en"), 0),
        change(UserRegistered(user_id=BO, email="pd1:bo", locale="de",
                              via_invitation_id=INVITATION), 1),
        change(InvitationCreated(invitation_id=INVITATION, invitee_email="pd1:i",
                                 inviter_id=ADMIN, locale="de", valid_from=T0,
                                 valid_until=T0 + timedelta(days=7), code_hash="ab" * 32), 1),
        # A second creation of the same invitation does not change who sent it.
        change(InvitationCreated(invitation_id=INVITATION, invitee_email="pd1:i",
                                 inviter_id=HELPER, locale="de", valid_from=T0,
                                 valid_until=T0 + timedelta(days=7), code_hash="ab" * 32), 1),
        change(UserEmailConfirmed(user_id=ANA), 2),
        change(UserEmailConfirmed(user_id=ANA), 3),  # the first confirmation's date stays
        change(UserEmailConfirmed(user_id=GHOST), 3),  # nobody registered: nothing appears
        change(LoginSucceeded(user_id=ANA, session_id=uuid.uuid4(),
                              expires_at=T0 + timedelta(hours=2)), 10),
        # Delivered later but older: the last sign-in stays the newest.
        change(LoginSucceeded(user_id=ANA, session_id=uuid.uuid4(),
                              expires_at=T0 + timedelta(hours=2)), 5),
        change(UserSuspended(user_id=ANA, reason="Spam", until=T0 + timedelta(days=1)), 11),
        change(UserProfileUpdated(user_id=ANA, name="Ana B.", locale="fr"), 12),
        change(UserReactivated(user_id=ANA), 13),  # confirmed before: active again
        change(UserLockedOut(user_id=ANA, until=T0 + timedelta(minutes=30),
                             failed_attempts=5), 14),
        change(UserDeletionRequested(user_id=ANA, requested_by=ANA,
                                     delete_after=T0 + timedelta(days=30)), 15),
        change(UserSuspended(user_id=BO, reason="Check"), 16),
        change(UserReactivated(user_id=BO), 17),  # never confirmed: pending again
        change(UserReactivated(user_id=BO), 17.5),  # not suspended: nothing
        change(UserEmailConfirmed(user_id=BO), 18),
        change(UserDeleted(user_id=BO), 19),
        change(UserProfileUpdated(user_id=BO, name="Bo", locale="en"), 20),  # deleted: ignored
        change(UserSuspended(user_id=BO, reason="Late"), 21),  # deleted: ignored
        change(UserRegistered(user_id=BO, email="pd1:bo2", locale="en"), 22),  # already here
        change(UserRegistered(user_id=CY, email="pd1:cy", locale="en"), 23),
        change(RoleGranted(user_id=ANA, role="community_member", scope="community",
                           community_id=GARDEN, granted_by=ADMIN), 24),
        change(RoleGranted(user_id=ANA, role="community_member", scope="community",
                           community_id=GARDEN, granted_by=HELPER), 25),  # who and when updated
        change(RoleGranted(user_id=ANA, role="platform_manager", scope="platform",
                           granted_by=ADMIN, privilege_escalation=True), 26),
        change(RoleRevoked(user_id=ANA, role="platform_manager", scope="platform"), 27),
        change(RoleGranted(user_id=CY, role="community_member", scope="community",
                           community_id=KITCHEN, granted_by=ADMIN), 28),
        change(RoleRevoked(user_id=CY, role="community_member", scope="community",
                           community_id=KITCHEN), 29),
        change(RoleGranted(user_id=CY, role="community_member", scope="community",
                           community_id=KITCHEN), 30),  # granted again, by the system
        change(RoleRevoked(user_id=CY, role="community_organizer", scope="community",
                           community_id=KITCHEN), 31),  # never granted: nothing
    ]


def security_history() -> list[Change]:
    def failed(user: uuid.UUID, minutes: float) -> Change:
        return change(LoginFailed(user_id=user, failure="wrong_password",
                                  consecutive_failures=1, client_address_hash=H1), minutes)

    def succeeded(user: uuid.UUID, minutes: float) -> Change:
        return change(LoginSucceeded(user_id=user, session_id=uuid.uuid4(),
                                     expires_at=T0 + timedelta(hours=3)), minutes)

    return [
        failed(ANA, 0),  # out of the 15-minute window of the success at 20
        *(failed(ANA, 10 + n) for n in range(5)),
        succeeded(ANA, 20),  # five failures within 15 minutes: takeover suspected
        succeeded(ANA, 21),  # the same five still in its window
        failed(BO, 0), failed(BO, 1), failed(BO, 2), failed(BO, 3),
        succeeded(BO, 4),  # four: below the threshold
        failed(BO, 5),
        succeeded(BO, 6),  # five now
        succeeded(CY, 40),  # no failures at all
        change(UserLockedOut(user_id=BO, until=T0 + timedelta(hours=1), failed_attempts=5), 7),
        change(RoleGranted(user_id=CY, role="platform_manager", scope="platform",
                           granted_by=ADMIN, privilege_escalation=True), 41),
        change(RoleGranted(user_id=CY, role="community_member", scope="community",
                           community_id=GARDEN), 42),  # not an escalation
    ]


def cuts(changes: Sequence[Change], seed: int) -> list[list[Change]]:
    rng = random.Random(seed)
    batches: list[list[Change]] = []
    at = 0
    while at < len(changes):
        size = rng.randint(1, 6)
        batches.append(list(changes[at:at + size]))
        at += size
    return batches


async def apply(connection: asyncpg.Connection[Any], model: ReadModel, version: int,
                batches: Sequence[Sequence[Change]]) -> None:
    await create_version(connection, model, version)
    for batch in batches:
        async with connection.transaction():
            await model.project(connection, Tables(model.name, version), batch)


async def table(connection: asyncpg.Connection[Any], name: str, order: str) -> list[dict[str, Any]]:
    return [dict(row) for row in await connection.fetch(f"SELECT * FROM {name} ORDER BY {order}")]


async def test_the_directory_is_the_same_however_its_events_are_batched(database_url: str) -> None:
    history = directory_history()
    model = directory.READ_MODEL
    ways = [[history], [[c] for c in history], *(cuts(history, seed) for seed in range(4))]
    connection = await asyncpg.connect(database_url)
    try:
        states = []
        for version, batches in enumerate(ways, start=1):
            await apply(connection, model, version, batches)
            t = Tables(model.name, version)
            states.append((await table(connection, t["users"], "user_id"),
                           await table(connection, t["roles"], "user_id, role, community_id"),
                           await table(connection, t["inviters"], "invitation_id")))
        assert all(state == states[0] for state in states[1:])
    finally:
        await connection.close()

    users, roles, inviters = states[0]
    by_id = {row["user_id"]: row for row in users}
    assert set(by_id) == {ANA, BO, CY}
    ana, bo = by_id[ANA], by_id[BO]
    assert (ana["status"], ana["name"], ana["locale"], ana["email"]) == (
        "active", "Ana B.", "fr", "pd1:ana")
    assert ana["confirmed_at"] == T0 + timedelta(minutes=2)
    assert ana["last_sign_in_at"] == T0 + timedelta(minutes=10)
    assert ana["suspended_until"] is None and ana["suspension_reason"] is None
    assert ana["locked_until"] == T0 + timedelta(minutes=30)
    assert ana["deletion_due_at"] == T0 + timedelta(days=30)
    assert (bo["status"], bo["email"], bo["name"], bo["locale"]) == ("deleted", None, None, "de")
    assert bo["deleted_at"] == T0 + timedelta(minutes=19)
    assert bo["suspension_reason"] is None and bo["via_invitation_id"] == INVITATION
    assert by_id[CY]["status"] == "pending_confirmation"
    assert [(r["user_id"], r["role"], r["community_id"], r["granted_by"], r["granted_at"])
            for r in roles] == sorted([
                (ANA, "community_member", GARDEN, HELPER, T0 + timedelta(minutes=25)),
                (CY, "community_member", KITCHEN, None, T0 + timedelta(minutes=30))])
    assert inviters == [{"invitation_id": INVITATION, "inviter_id": ADMIN}]


async def test_the_security_monitor_finds_the_same_however_its_events_are_batched(
    database_url: str,
) -> None:
    history = security_history()
    model = security_monitor.read_model(takeover_failures=5,
                                        takeover_window=timedelta(minutes=15))
    ways = [[history], [[c] for c in history], *(cuts(history, seed) for seed in range(4))]
    connection = await asyncpg.connect(database_url)
    try:
        states = []
        for version, batches in enumerate(ways, start=1):
            await apply(connection, model, version, batches)
            states.append(await table(connection, Tables(model.name, version)["events"],
                                      "event_id"))
        assert all(state == states[0] for state in states[1:])
    finally:
        await connection.close()

    events = states[0]
    kinds: dict[str, int] = {}
    for row in events:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    assert kinds == {"login_failed": 11, "login_succeeded": 5, "takeover_suspected": 3,
                     "locked_out": 1, "privilege_escalation": 1}
    takeovers = sorted((row["user_id"] == ANA, row["occurred_at"],
                        json.loads(row["detail"])["failures"])
                       for row in events if row["kind"] == "takeover_suspected")
    assert takeovers == [(False, T0 + timedelta(minutes=6), 5),
                         (True, T0 + timedelta(minutes=20), 5),
                         (True, T0 + timedelta(minutes=21), 5)]
    escalation = next(row for row in events if row["kind"] == "privilege_escalation")
    assert (escalation["user_id"], escalation["actor_id"]) == (CY, ADMIN)
