"""The invitation board and the analytics over HTTP, fed with invitations' contract events.

The analytics are checked against figures computed here, by hand, from a
generated history of thousands of invitations.
"""

from __future__ import annotations

import json
import random
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from test_projections_directory import (
    Service,
    Topics,
    envelope,
    eventually,
    registered,
    running_service,
    user_event,
)

from eventkit.envelope import Envelope
from eventkit.personal_data import encrypt_event
from eventkit.testing.kafka import read_topic
from schemas.identity import UserEmailConfirmed
from schemas.invitations import (
    InvitationAccepted,
    InvitationCreated,
    InvitationExpired,
    InvitationResent,
    InvitationRevoked,
)
from schemas.notifications import NotificationSent
from schemas.roles import RoleAssignment

pytestmark = pytest.mark.integration

COMMUNITY = uuid.UUID("6f1e3c1e-8a59-4e0c-9d43-3c8e5a8f9b10")
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def role(name: str) -> RoleAssignment:
    if name.startswith("platform_"):
        return RoleAssignment(role=name, scope="platform")  # type: ignore[arg-type]
    return RoleAssignment(role=name, scope="community", community_id=COMMUNITY)  # type: ignore[arg-type]


def created(service: Service | None, invitation_id: UUID, *, inviter: UUID, at: datetime,
            roles: tuple[str, ...] = (), batch: UUID | None = None,
            address: str = "guest@example.org") -> Envelope:
    event = InvitationCreated(
        invitation_id=invitation_id, invitee_email=address, inviter_id=inviter,
        roles=tuple(role(r) for r in roles), locale="en", valid_from=at,
        valid_until=at + timedelta(days=30), code_hash="ab" * 32, batch_id=batch)
    if service is not None:
        key = service.invitation_keys.key(str(invitation_id))
        event = encrypt_event(event, subject_id=str(invitation_id), key=key)
    return envelope(event, str(invitation_id), at=at)


def sent(invitation_id: UUID, at: datetime) -> Envelope:
    return envelope(NotificationSent(
        notification_id=uuid.uuid4(), template="invitation", locale="en",
        recipient_email="pd1:x:y", cause_event_id=uuid.uuid4(),
        cause_type="guestlist.invitations.InvitationCreated.v1",
        cause_subject=str(invitation_id), attempt=1), str(uuid.uuid4()), at=at)


async def applied(service: Service, read_model: str, count: int) -> bool:
    rows = await service.fetch(
        "SELECT coalesce(sum(events_applied), 0) AS n FROM read_model_checkpoints "
        "WHERE name = $1", read_model)
    return bool(rows[0]["n"] >= count)


async def test_the_board_lists_invitations_with_sends_status_and_roles_and_audits_emails(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        inviter, other = uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC)
        first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await service.publish(
            # The mail's record can come before the invitation it belongs to.
            sent(first, now - timedelta(hours=5)),
            created(service, first, inviter=inviter, at=now - timedelta(hours=6),
                    roles=("community_facilitator",), address="ivy@example.org"),
            sent(first, now - timedelta(hours=1)),
            envelope(InvitationResent(invitation_id=first, resent_by=inviter), str(first)),
            created(service, second, inviter=other, at=now - timedelta(hours=4),
                    roles=("platform_developer",), address="jon@example.org"),
            envelope(InvitationAccepted(invitation_id=second, user_id=uuid.uuid4()),
                     str(second)),
            created(service, third, inviter=inviter, at=now - timedelta(hours=3),
                    address="kim@example.org"),
            envelope(InvitationRevoked(invitation_id=third, revoked_by=inviter), str(third)),
        )
        await eventually(lambda: applied(service, "invitations", 8))
        everything = (await service.get("/v1/invitations")).json()
        del service.invitation_keys.keys[str(third)]  # the invitee's data erased
        mine = (await service.get("/v1/invitations", inviter=str(inviter))).json()
        accepted = (await service.get("/v1/invitations", status="accepted")).json()
        developers = (await service.get("/v1/invitations", role="platform_developer")).json()
        searched = (await service.get("/v1/invitations", q="IVY@")).json()
        page = (await service.get("/v1/invitations", sort="created_at", limit=2)).json()
        rest = (await service.get("/v1/invitations", sort="created_at", limit=2,
                                  cursor=page["next_cursor"])).json()
        soon = (await service.get("/v1/invitations", valid_until_before=(
            now + timedelta(days=30) - timedelta(hours=3, minutes=30)).isoformat())).json()
        forbidden = await service.client.get("/v1/invitations",
                                             headers=service.auth("list_person"))
        bad = await service.get("/v1/invitations", status="lost")
        seen = await read_topic(kafka_bootstrap, service.topics["projections.access"], 11)

    by_id = {item["invitation_id"]: item for item in everything["items"]}
    assert list(by_id) == [str(third), str(second), str(first)]  # newest first
    assert by_id[str(first)]["invitee_email"] == "ivy@example.org"
    assert by_id[str(first)]["times_sent"] == 2 and by_id[str(first)]["resend_requests"] == 1
    assert by_id[str(first)]["last_sent_at"].startswith(
        (now - timedelta(hours=1)).isoformat()[:16])
    assert by_id[str(first)]["roles"] == [{"role": "community_facilitator",
                                           "scope": "community",
                                           "community_id": str(COMMUNITY)}]
    assert by_id[str(first)]["status"] == "pending"
    assert by_id[str(second)]["status"] == "accepted" and by_id[str(second)]["accepted_at"]
    assert by_id[str(third)]["status"] == "revoked"
    assert [i["invitee_email"] for i in mine["items"]] == ["[erased]", "ivy@example.org"]
    assert [i["invitation_id"] for i in accepted["items"]] == [str(second)]
    assert [i["invitation_id"] for i in developers["items"]] == [str(second)]
    assert [i["invitation_id"] for i in searched["items"]] == [str(first)]
    assert [i["invitation_id"] for i in page["items"] + rest["items"]] == [
        str(first), str(second), str(third)]
    assert [i["invitation_id"] for i in soon["items"]] == [str(second), str(first)]
    assert forbidden.status_code == 403 and "manage_invitations" in forbidden.text
    assert bad.status_code == 422 and "status" in bad.json()["detail"]
    # One PersonalDataViewed per invitee e-mail shown in clear; the erased one is not counted.
    subjects = Counter(json.loads(e.data_json)["subject_id"] for e in seen)
    assert subjects == {str(first): 5, str(second): 5, str(third): 1}
    assert {tuple(json.loads(e.data_json)["fields"]) for e in seen} == {("invitee_email",)}


def history(count: int, seed: int = 8) -> tuple[list[Envelope], list[dict[str, Any]]]:
    """``count`` invitations over eight weeks with outcomes, and what happened to each."""
    rng = random.Random(seed)
    inviters = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(12)]
    batches = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(6)]
    role_sets = [(), ("community_member",), ("community_facilitator",),
                 ("platform_developer",), ("community_member", "community_organizer")]
    events: list[Envelope] = []
    facts: list[dict[str, Any]] = []
    for n in range(count):
        inviter = rng.choice(inviters)
        # The first inviter always assigns the same roles; the others vary.
        roles = role_sets[1] if inviter == inviters[0] else rng.choice(role_sets)
        batch = rng.choice(batches) if rng.random() < 0.3 else None
        at = MONDAY + timedelta(minutes=rng.randrange(60 * 24 * 56))
        invitation_id = uuid.UUID(int=n + 1)
        outcome = rng.choices(["accepted", "expired", "revoked", "pending"], [5, 2, 1, 2])[0]
        fact: dict[str, Any] = {"inviter": inviter, "roles": tuple(sorted(roles)),
                                "batch": batch, "at": at, "outcome": outcome}
        events.append(created(None, invitation_id, inviter=inviter, at=at, roles=roles,
                              batch=batch))
        if outcome == "accepted":
            fact["after"] = rng.randrange(60, 14 * 86400)
            when = at + timedelta(seconds=fact["after"])
            events.append(envelope(InvitationAccepted(
                invitation_id=invitation_id, user_id=uuid.uuid4(), accepted_at=when),
                str(invitation_id), at=when + timedelta(seconds=2)))
        elif outcome == "expired":
            fact["expired_at"] = at + timedelta(days=30)
            events.append(envelope(InvitationExpired(
                invitation_id=invitation_id, valid_until=fact["expired_at"]),
                str(invitation_id), at=fact["expired_at"]))
        elif outcome == "revoked":
            events.append(envelope(InvitationRevoked(
                invitation_id=invitation_id, revoked_by=inviter), str(invitation_id),
                at=at + timedelta(hours=2)))
        facts.append(fact)
    return events, facts


def expected_figures(facts: list[dict[str, Any]], start: datetime, end: datetime
                     ) -> dict[str, Any]:
    inside = [f for f in facts if start <= f["at"] < end]
    outcomes = Counter(f["outcome"] for f in inside)
    per_inviter: dict[str, Counter[str]] = defaultdict(Counter)
    for fact in inside:
        per_inviter[str(fact["inviter"])][fact["outcome"]] += 1
    expired = [f for f in facts if f["outcome"] == "expired" and start <= f["expired_at"] < end]
    weeks = Counter((f["expired_at"] - timedelta(days=f["expired_at"].weekday()))
                    .date().isoformat() for f in expired)
    roles = Counter(r for f in expired for r in (f["roles"] or ("(none)",)))
    by_inviter_sets: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    by_batch_sets: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    for fact in inside:
        by_inviter_sets[str(fact["inviter"])][fact["roles"]] += 1
        if fact["batch"] is not None:
            by_batch_sets[str(fact["batch"])][fact["roles"]] += 1
    return {
        "sent": len(inside), "outcomes": outcomes,
        "acceptance_rate": outcomes["accepted"] / len(inside),
        "median": statistics.median(f["after"] for f in inside if f["outcome"] == "accepted"),
        "per_inviter": per_inviter,
        "expired_total": len(expired), "expired_weeks": dict(weeks), "expired_roles": roles,
        "expired_inviters": Counter(str(f["inviter"]) for f in expired),
        "inviter_sets": by_inviter_sets, "batch_sets": by_batch_sets,
    }


async def test_analytics_match_hand_computed_figures_over_thousands_of_invitations(
    database_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    events, facts = history(3000)
    start, end = MONDAY + timedelta(days=7), MONDAY + timedelta(days=49)
    async with running_service(database_url=database_url, kafka_bootstrap=kafka_bootstrap,
                               kafka_topics=kafka_topics) as service:
        people = [registered(service, address=f"p{n}@example.org",
                             at=MONDAY + timedelta(days=n % 3, hours=n),
                             via=uuid.uuid4() if n % 4 == 0 else None) for n in range(12)]
        confirmations = [user_event(UserEmailConfirmed(user_id=user_id), user_id,
                                    at=MONDAY + timedelta(days=4))
                         for _, user_id in people[:5]]
        await service.publish(*events, *(joined for joined, _ in people), *confirmations)
        await eventually(lambda: applied(service, "invitations", len(events) + 17))
        await eventually(lambda: applied(service, "directory", len(events) + 17))
        response = await service.get("/v1/analytics/invitations", bucket="week",
                                     **{"from": start.isoformat(), "to": end.isoformat()})
        registrations = await service.get("/v1/analytics/registrations", bucket="day",
                                          **{"from": MONDAY.isoformat(),
                                             "to": (MONDAY + timedelta(days=7)).isoformat()})
        backwards = await service.get("/v1/analytics/invitations",
                                      **{"from": end.isoformat(), "to": start.isoformat()})
        bad_bucket = await service.get("/v1/analytics/invitations", bucket="year")
        forbidden = await service.client.get("/v1/analytics/invitations",
                                             headers=service.auth("list_person"))

    want = expected_figures(facts, start, end)
    got = response.json()
    assert response.status_code == 200, response.text
    assert got["overall"]["sent"] == want["sent"] > 1000
    for outcome in ("accepted", "expired", "revoked", "pending"):
        assert got["overall"][outcome] == want["outcomes"][outcome], outcome
    assert got["acceptance_rate"] == pytest.approx(want["acceptance_rate"])
    assert got["overall"]["median_seconds_to_accept"] == pytest.approx(want["median"])
    inviters = {row["inviter_id"]: row for row in got["by_inviter"]}
    assert set(inviters) == set(want["per_inviter"])
    for inviter, counts in want["per_inviter"].items():
        row = inviters[inviter]
        assert (row["sent"], row["accepted"], row["expired"], row["revoked"]) == (
            sum(counts.values()), counts["accepted"], counts["expired"], counts["revoked"])
        assert row["success_rate"] == pytest.approx(counts["accepted"] / sum(counts.values()))
    expirations = got["expirations"]
    assert expirations["total"] == want["expired_total"]
    assert {c["key"]: c["count"] for c in expirations["by_bucket"]} == want["expired_weeks"]
    assert {c["key"]: c["count"] for c in expirations["by_role"]} == dict(want["expired_roles"])
    assert {c["key"]: c["count"] for c in expirations["by_inviter"]} == dict(
        want["expired_inviters"])
    for listed, wanted in ((got["role_consistency_by_inviter"], want["inviter_sets"]),
                           (got["role_consistency_by_batch"], want["batch_sets"])):
        assert {row["id"] for row in listed} == set(wanted)
        for row in listed:
            sets = {tuple(s["roles"]): s["count"] for s in row["role_sets"]}
            assert sets == dict(wanted[row["id"]])
            assert row["consistent"] == (len(sets) == 1)
    assert sum(row["consistent"] for row in got["role_consistency_by_inviter"]) == 1
    days = {b["bucket_start"][:10]: b for b in registrations.json()["buckets"]}
    assert sorted(days) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert sum(b["total"] for b in days.values()) == 12
    assert sum(b["by_route"]["invitation"] for b in days.values()) == 3
    assert sum(b["by_status"]["active"] for b in days.values()) == 5
    assert sum(b["by_status"]["pending_confirmation"] for b in days.values()) == 7
    assert backwards.status_code == 422 and "to" in backwards.json()["detail"]
    assert bad_bucket.status_code == 422 and "bucket" in bad_bucket.json()["detail"]
    assert forbidden.status_code == 403 and "view_platform_analytics" in forbidden.text
