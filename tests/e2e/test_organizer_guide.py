"""The organizer guide, end to end: the whole stack as processes, driven over HTTP and the CLI.

Each test is one thing an organizer or a member does and what they would
notice: answers, e-mails in the SMTP sink, the dashboards (projections), the
audit log. Reads wait for writes with `min_position`; what has no position
(a consumer's reaction, a mail) is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from e2e_stack import Stack, eventually, text_of
from walkthrough import (
    CAMILLE,
    CAMILLE_GREETING,
    COLLEAGUES,
    MANAGER_EMAIL,
    MANAGER_PASSWORD,
    PASSWORD,
    PLATFORM,
    Organizer,
    Person,
    Walkthrough,
    assert_problem,
    register,
    sign_in,
    token_for,
    what_other_services_answer,
)

pytestmark = pytest.mark.integration

Camille = tuple[dict[str, Any], Person]
SUSPENDED_UNTIL = "2027-01-15T09:00:00Z"  # 10:00 in Paris


async def test_the_first_platform_manager_signs_in_and_sets_up_the_platform(
    stack: Stack, organizer: Organizer, platform: dict[str, Any]
) -> None:
    second_manager = asyncio.ensure_future(stack.cli(
        "identity", "admin", "create", "--email", "second@example.org",
        "--password", "another long passphrase"))
    async with stack.client("identity", organizer.token) as identity:
        shown = await identity.get("/v1/platform/settings")
        bad = await identity.put("/v1/platform/settings",
                                 json={**PLATFORM, "time_zone": "Europe/Atlantis"})
        after = await identity.get("/v1/platform/settings")
    second = await second_manager

    assert "platform manager created" in organizer.created
    assert {name: platform[name] for name in PLATFORM} == PLATFORM
    assert platform["changed_by"] == organizer.user_id
    assert shown.status_code == 200
    assert {name: shown.json()[name] for name in PLATFORM} == PLATFORM
    assert "time_zone" in json.dumps(assert_problem(bad, 422, "validation-error"))
    assert after.json() == shown.json()
    # The first manager is made once; the second attempt says why and creates nobody.
    assert second.returncode == 1, second.stdout
    assert "platform manager" in second.stdout
    assert (await sign_in(stack, "second@example.org", "another long passphrase")).status_code \
        == 401


async def test_the_invitation_mail_arrives_in_french_and_the_public_lookup_shows_it(
    stack: Stack, organizer: Organizer, camille_invitation: dict[str, Any]
) -> None:
    invited = camille_invitation
    code = invited["code"]
    async with stack.client("invitations") as public:
        lookup = await public.get("/v1/invitations/lookup", params={"code": code})
        unknown = await public.get("/v1/invitations/lookup", params={"code": "x" * 32})
    mail = await stack.mail_to(CAMILLE, matching=lambda m: code in text_of(m))
    text = text_of(mail)
    async with stack.client("notifications", organizer.token) as notifications:
        async def logged_as_sent() -> list[dict[str, Any]] | None:
            page = (await notifications.get("/v1/notifications",
                                            params={"template": "invitation"})).json()
            mine = [d for d in page["items"] if d["invitation_id"] == invited["id"]]
            return mine if mine and mine[0]["status"] == "sent" else None

        deliveries = await eventually(logged_as_sent, what="the delivery log showing the mail")

    assert mail["Content-Language"] == "fr"
    assert mail["Subject"] == "Vous êtes invité à rejoindre Maison Commune"
    assert "Vous avez été invité à rejoindre Maison Commune." in text
    assert CAMILLE_GREETING in text
    assert "Facilitateur" in text
    assert invited["url"] in text and code in text
    # The window in the platform's zone: 23:30 UTC on 31 December is 00:30 in Paris.
    assert "au 1 janvier 2027, 00:30 (Europe/Paris)" in text
    assert lookup.status_code == 200, lookup.text
    shown = lookup.json()
    # The page the link opens names the platform as the mail does.
    assert shown["platform_name"] == "Maison Commune"
    assert shown["status"] == "pending"
    assert shown["greeting"] == CAMILLE_GREETING and shown["locale"] == "fr"
    assert [role["role"] for role in shown["roles"]] == ["community_facilitator"]
    assert shown["valid_until"] == "2026-12-31T23:30:00Z"
    assert_problem(unknown, 404, "not-found")
    # The delivery log: one mail, the address masked, the Message-ID the invitee received.
    assert len(deliveries) == 1
    assert deliveries[0]["recipient"] == "c***@example.org"
    assert deliveries[0]["locale"] == "fr"
    assert deliveries[0]["message_id"] == mail["Message-ID"]


async def test_the_accepted_invitation_shows_in_the_directory_the_board_and_the_analytics(
    stack: Stack, organizer: Organizer, camille: Camille
) -> None:
    invited, person = camille
    registered = person.registration
    async with stack.client("invitations", organizer.token) as invitations:
        async def accepted() -> dict[str, Any] | None:
            found = (await invitations.get(f"/v1/invitations/{invited['id']}")).json()
            return found if found["status"] == "accepted" else None

        invitation = await eventually(accepted, what="the invitation accepted")
    async with stack.client("projections", organizer.token) as projections:
        listed = await projections.get(f"/v1/directory/users/{person.user_id}",
                                       params={"min_position": registered["position"]})

        async def on_the_board() -> dict[str, Any] | None:
            board = (await projections.get("/v1/invitations", params={"q": CAMILLE})).json()
            items = [i for i in board["items"] if i["invitation_id"] == invited["id"]]
            return items[0] if items and items[0]["status"] == "accepted" else None

        card = await eventually(on_the_board, what="the board showing the invitation accepted")
        everyone = (await projections.get("/v1/invitations", params={"limit": 200})).json()
        figures = (await projections.get("/v1/analytics/invitations")).json()
        people = (await projections.get("/v1/directory/users", params={"limit": 200})).json()
        registrations = (await projections.get("/v1/analytics/registrations",
                                               params={"bucket": "day"})).json()

    assert invitation["accepted_user_id"] == person.user_id
    assert listed.status_code == 200, listed.text
    assert listed.json()["consistency"]["reached"] is True
    user = listed.json()["user"]
    assert (user["email"], user["name"], user["locale"]) == (CAMILLE, "Camille Martin", "fr")
    assert user["status"] == registered["status"]
    assert user["registration_route"] == "invitation"
    assert user["via_invitation_id"] == invited["id"]
    assert user["invited_by"] == organizer.user_id
    assert card["invitee_email"] == CAMILLE and card["inviter_id"] == organizer.user_id
    assert card["accepted_user_id"] == person.user_id and card["times_sent"] >= 1
    # The analytics count what the board and the directory show.
    board_accepted = sum(1 for i in everyone["items"] if i["status"] == "accepted")
    assert figures["overall"]["accepted"] == board_accepted >= 1
    mine = [row for row in figures["by_inviter"] if row["inviter_id"] == organizer.user_id]
    assert mine and mine[0]["accepted"] >= 1
    by_route = sum(b["by_route"]["invitation"] for b in registrations["buckets"])
    assert by_route == sum(1 for p in people["items"] if p["registration_route"] == "invitation")
    assert sum(b["total"] for b in registrations["buckets"]) == len(people["items"])


async def test_registering_with_the_code_makes_the_invitee_active_with_the_invitation_roles(
    stack: Stack, organizer: Organizer, camille: Camille
) -> None:
    invited, person = camille
    async with stack.client("projections", organizer.token) as projections:
        shown = await projections.get(f"/v1/directory/users/{person.user_id}",
                                      params={"min_position": person.registration["position"]})

    # The code was for her own address: it vouches for it, no confirmation mail needed.
    assert person.registration["status"] == "active"
    user = shown.json()["user"]
    assert user["status"] == "active" and user["confirmed_at"] is not None
    roles = {(r["role"], r["community_id"]) for r in user["community_roles"]}
    assert {(role["role"], role["community_id"]) for role in invited["roles"]} <= roles


async def test_the_invitation_role_is_for_the_community_everyone_joins(
    stack: Stack, organizer: Organizer, camille: Camille
) -> None:
    invited, person = camille
    async with stack.client("projections", organizer.token) as projections:
        shown = await projections.get(f"/v1/directory/users/{person.user_id}",
                                      params={"min_position": person.registration["position"]})

    member_of = {r["community_id"] for r in shown.json()["user"]["community_roles"]
                 if r["role"] == "community_member"}
    # Neither names a community: both mean "the default community", so the same id.
    assert len(member_of) == 1
    assert {role["community_id"] for role in invited["roles"]} == member_of


async def test_the_invitee_signs_in_and_exports_her_data(
    stack: Stack, camille: Camille
) -> None:
    _, person = camille
    signed_in = await sign_in(stack, person.email, person.password)
    assert signed_in.status_code == 201, signed_in.text
    async with stack.client("identity", signed_in.json()["access_token"]) as identity:
        exported = await identity.get("/v1/me/export")

    assert exported.status_code == 200, exported.text
    assert "attachment" in exported.headers["content-disposition"]
    assert CAMILLE in exported.text


async def test_the_audit_timeline_of_an_invitation_shows_its_data_while_nothing_is_erased(
    stack: Stack, organizer: Organizer, camille_invitation: dict[str, Any]
) -> None:
    async with stack.client("audit", organizer.token) as audit:
        async def created() -> list[dict[str, Any]] | None:
            answer = await audit.get(f"/v1/audit/subjects/{camille_invitation['id']}/timeline")
            items: list[dict[str, Any]] = answer.json()["items"]
            return items or None

        timeline = await eventually(created, what="the invitation in the audit log")

    # The invitation's key is there (invitations owns it), so the officer sees the address.
    first = timeline[0]
    assert first["type"] == "guestlist.invitations.InvitationCreated.v1"
    assert first["data"]["invitee_email"] == CAMILLE
    assert first["data"]["greeting"] == CAMILLE_GREETING


async def test_an_open_registration_is_refused_while_the_platform_is_invitation_only(
    stack: Stack, walk: Walkthrough, organizer: Organizer, platform: dict[str, Any]
) -> None:
    walk_in = "walk-in@example.org"
    refused = await register(stack, walk, walk_in, None)
    bad_code = await register(stack, walk, walk_in, "y" * 32)
    signing_in = await sign_in(stack, walk_in, PASSWORD)
    async with stack.client("projections", organizer.token) as projections:
        found = await projections.get("/v1/directory/users",
                                      params={"q": walk_in, "min_position": platform["position"]})

    assert assert_problem(refused, 422, "/invitation-required")["field"] == "invitation_code"
    assert assert_problem(bad_code, 422, "/invitation-unknown")["field"] == "invitation_code"
    assert_problem(signing_in, 401, "/invalid-credentials")
    assert found.status_code == 200 and found.json()["items"] == []


async def test_failed_sign_ins_up_to_the_lockout_appear_in_the_security_monitor(
    stack: Stack, organizer: Organizer, colleagues: dict[str, Organizer]
) -> None:
    email, password = COLLEAGUES["dominique"]
    dominique = colleagues["dominique"]
    failures = [await sign_in(stack, email, "not the right passphrase") for _ in range(5)]
    locked = await sign_in(stack, email, password)
    async with stack.client("projections", organizer.token) as projections:
        async def locked_out() -> list[dict[str, Any]] | None:
            page = (await projections.get("/v1/security/events",
                                          params={"user_id": dominique.user_id})).json()
            kinds = [item["kind"] for item in page["items"]]
            return page["items"] if "locked_out" in kinds and kinds.count("login_failed") >= 6 \
                else None

        events = await eventually(locked_out, what="the lockout in the security monitor")
        summary = (await projections.get("/v1/security/summary")).json()

    for failure in failures:
        assert_problem(failure, 401, "/invalid-credentials")
    assert assert_problem(locked, 403, "/account-unavailable")["reason"] == "account_locked"
    kinds = [item["kind"] for item in events]
    assert kinds.count("login_failed") == 6 and kinds.count("locked_out") == 1
    lockout = next(item for item in events if item["kind"] == "locked_out")
    assert lockout["detail"]["failed_attempts"] == 5
    counted = {row["user_id"]: row["count"] for row in summary["failed_by_account"]}
    assert counted[dominique.user_id] == 6
    assert summary["lockouts"] >= 1


async def test_a_platform_role_grant_shows_as_a_privilege_escalation(
    stack: Stack, walk: Walkthrough, organizer: Organizer, camille: Camille
) -> None:
    _, person = camille
    async with stack.client("identity", organizer.token) as identity:
        mismatched = await identity.post(f"/v1/users/{person.user_id}/roles",
                                         json={"role": "platform_manager", "scope": "community"})
        granted = await identity.post(f"/v1/users/{person.user_id}/roles",
                                      json={"role": "platform_analytics_viewer",
                                            "scope": "platform"})
    assert granted.status_code == 201, granted.text
    walk.wrote(person.user_id, granted.json())
    async with stack.client("projections", organizer.token) as projections:
        summary = await projections.get("/v1/security/summary",
                                        params={"min_position": granted.json()["position"]})
        shown = await projections.get(f"/v1/directory/users/{person.user_id}",
                                      params={"min_position": granted.json()["position"]})

    assert "role" in json.dumps(assert_problem(mismatched, 422, "validation-error"))
    assert summary.status_code == 200 and summary.json()["consistency"]["reached"] is True
    escalations = [e for e in summary.json()["privilege_escalations"]
                   if e["user_id"] == person.user_id]
    assert [(e["detail"]["role"], e["actor_id"]) for e in escalations] == [
        ("platform_analytics_viewer", organizer.user_id)]
    # The refused grant changed nothing: one platform role, the one granted.
    assert shown.json()["user"]["platform_roles"] == ["platform_analytics_viewer"]


async def test_a_suspended_person_is_refused_by_the_other_services_within_a_second_and_told(
    stack: Stack, walk: Walkthrough, organizer: Organizer, platform: dict[str, Any],
    colleagues: dict[str, Organizer],
) -> None:
    email, password = COLLEAGUES["sacha"]
    sacha = colleagues["sacha"]
    reason = "Repeated unwanted messages reported by three members"
    async with stack.client("identity", organizer.token) as identity:
        before = await what_other_services_answer(stack, sacha.token)
        suspended = await identity.post(f"/v1/users/{sacha.user_id}/suspend",
                                        json={"reason": reason, "until": SUSPENDED_UNTIL})
        answered = time.monotonic()
        assert suspended.status_code == 200, suspended.text

        seen: list[dict[str, int]] = []

        async def refused() -> dict[str, int] | None:
            seen.append(await what_other_services_answer(stack, sacha.token))
            return seen[-1] if set(seen[-1].values()) == {401} else None

        try:
            await eventually(refused, within=1.0, every=0.05,
                             what="every other service refusing the suspended person's token")
        except AssertionError as late:
            raise AssertionError(f"{late}; they answered {seen[-1]}") from None
        refused_after = time.monotonic() - answered
        signing_in = await sign_in(stack, email, password)
        walk.wrote(sacha.user_id, suspended.json())
        async with stack.client("projections", organizer.token) as projections:
            while_suspended = (await projections.get(
                f"/v1/directory/users/{sacha.user_id}",
                params={"min_position": suspended.json()["position"]})).json()["user"]
        notice = await stack.mail_to(email, matching=lambda m: "suspended" in m["Subject"])
        reactivated = await identity.post(f"/v1/users/{sacha.user_id}/reactivate")
        assert reactivated.status_code == 200, reactivated.text
        walk.wrote(sacha.user_id, reactivated.json())
    back = await stack.mail_to(email, matching=lambda m: "active again" in m["Subject"])
    after = await what_other_services_answer(stack, await token_for(stack, email, password))

    assert before == {"projections": 200, "invitations": 404, "notifications": 200, "audit": 200}
    assert refused_after <= 1.0
    assert suspended.json()["status"] == "suspended"
    assert assert_problem(signing_in, 403, "/account-unavailable")["reason"] == "account_suspended"
    assert while_suspended["status"] == "suspended"
    assert while_suspended["suspension_reason"] == reason
    # Sacha's account speaks English (`admin create`); times are the platform's.
    assert notice["Subject"] == "Your Maison Commune account has been suspended"
    assert f"Reason: {reason}" in text_of(notice)
    assert re.search(r"January 15, 2027, 10:00\sAM \(Europe/Paris\)", text_of(notice))
    assert back["Subject"] == "Your Maison Commune account is active again"
    assert reactivated.json()["status"] == "active"
    assert after == before


async def test_the_audit_log_holds_every_event_once_and_the_chain_verifies(
    stack: Stack, walk: Walkthrough, organizer: Organizer, camille: Camille
) -> None:
    assert camille[1].user_id in walk.versions, "the fixtures wrote nothing"
    async with stack.client("audit", organizer.token) as audit:
        for stream, version in walk.versions.items():
            async def caught_up(stream: str = stream, version: int = version) -> bool:
                return max(_sequences(await _entries(audit, subject=stream)), default=0) \
                    >= version

            await eventually(caught_up, what=f"the audit log reaching {stream} v{version}")
        by_stream = {stream: _sequences(await _entries(audit, subject=stream))
                     for stream in walk.versions}
        everything = await _entries(audit)
        verified = await audit.get("/v1/audit/verify")

    for stream, sequences in by_stream.items():
        assert sequences == list(range(1, len(sequences) + 1)), f"{stream}: {sequences}"
        assert len(sequences) >= walk.versions[stream]
    ids = [entry["ce_id"] for entry in everything]
    assert len(ids) == len(set(ids)), "an event is in the log twice"
    assert [entry["sequence"] for entry in everything] == list(range(1, len(everything) + 1))
    assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text


async def _entries(audit: httpx.AsyncClient, subject: str | None = None) -> list[dict[str, Any]]:
    """Every log entry (about `subject`, if given), oldest first, page by page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if subject is not None:
            params["subject"] = subject
        if cursor is not None:
            params["cursor"] = cursor
        answer = await audit.get("/v1/audit/events", params=params)
        assert answer.status_code == 200, answer.text
        found += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return found


def _sequences(entries: list[dict[str, Any]]) -> list[int]:
    """The versions of a stream the log holds: its own service's events, not access records."""
    owned = [e for e in entries
             if e["topic"] in ("identity.user", "identity.platform", "invitations.invitation")]
    return sorted(int(e["ce_sequence"]) for e in owned)


async def test_a_person_downloads_their_own_data(
    stack: Stack, colleagues: dict[str, Organizer]
) -> None:
    email, password = COLLEAGUES["sacha"]
    token = await token_for(stack, email, password)
    async with stack.client("identity", token) as identity:
        exported = await identity.get("/v1/me/export")
    async with stack.client("identity") as anonymous:
        nobody = await anonymous.get("/v1/me/export")

    assert exported.status_code == 200, exported.text
    assert "attachment" in exported.headers["content-disposition"]
    assert email in exported.text and colleagues["sacha"].user_id in exported.text
    assert nobody.status_code == 401


async def test_an_erasure_leaves_erased_in_the_directory_and_the_audit_log_which_verifies(
    stack: Stack, walk: Walkthrough, organizer: Organizer, camille: Camille
) -> None:
    _, person = camille
    async with stack.client("identity", organizer.token) as identity:
        deleted = await identity.request(
            "DELETE", f"/v1/users/{person.user_id}", json={"reason": "demande d'effacement RGPD"})
    assert deleted.status_code == 200, deleted.text
    walk.wrote(person.user_id, deleted.json())
    async with stack.client("projections", organizer.token) as projections:
        shown = await projections.get(f"/v1/directory/users/{person.user_id}",
                                      params={"min_position": deleted.json()["position"]})
    async with stack.client("audit", organizer.token) as audit:
        async def erased_in_the_log() -> list[dict[str, Any]] | None:
            answer = await audit.get(f"/v1/audit/subjects/{person.user_id}/timeline",
                                     params={"limit": 200})
            items: list[dict[str, Any]] = answer.json()["items"]
            types = [item["type"] for item in items]
            shown = json.dumps(items)
            return items if "guestlist.identity.UserDeleted.v1" in types \
                and CAMILLE not in shown else None

        # Audit keeps a key it read for 30 s (her export read it): the erasure shows within that.
        timeline = await eventually(erased_in_the_log, within=40.0,
                                    what="the deletion, and her data erased, in the audit log")
    cli = await stack.cli("audit", "audit", "verify", "--key-file", str(stack.audit_key_file))
    signing_in = await sign_in(stack, person.email, person.password)

    assert deleted.json()["status"] == "deleted"
    user = shown.json()["user"]
    assert user["status"] == "deleted"
    assert user["email"] == "[erased]" and user["name"] in ("[erased]", None)
    registered = next(i for i in timeline if i["type"] == "guestlist.identity.UserRegistered.v1")
    assert registered["data"]["email"] == "[erased]"
    assert registered["data"]["name"] == "[erased]"
    assert CAMILLE not in json.dumps(timeline) and "Camille Martin" not in json.dumps(timeline)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["ok"] is True
    assert_problem(signing_in, 401, "/invalid-credentials")
    # The organizer's own account is untouched.
    assert (await sign_in(stack, MANAGER_EMAIL, MANAGER_PASSWORD)).status_code == 201
