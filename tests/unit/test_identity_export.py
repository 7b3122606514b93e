"""The data export's assembly: given identity's records and the audit log's timelines (an
in-memory source behind the same port as the audit service's HTTP timeline), when the export is
collected, then it is whole, or refused while the log lacks any of identity's events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from schemas.catalog import build_registry
from services.identity.audit_timeline import TimelineEntry, TimelineUnavailable
from services.identity.export import (
    WITHHELD,
    EventRef,
    ExportUnavailable,
    HeldData,
    collect_export,
)
from services.identity.responses import AccountRecords, DataExport, Profile, Sessions

REGISTRY = build_registry()
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REGISTERED = "guestlist.identity.UserRegistered.v1"
VIEWED = "guestlist.identity.PersonalDataViewed.v1"
PROFILE_UPDATED = "guestlist.identity.UserProfileUpdated.v1"
INVITATION_CREATED = "guestlist.invitations.InvitationCreated.v1"


class Timelines:
    """The audit log's timelines in memory; ``behind`` hides the newest entries for a while."""

    def __init__(self, entries: Sequence[TimelineEntry], *, person: UUID | None = None,
                 behind: int = 0, hidden_for: int = 0,
                 down: TimelineUnavailable | None = None) -> None:
        self.entries, self.person = list(entries), str(person)
        self.behind, self.hidden_for, self.down = behind, hidden_for, down
        self.calls = 0

    async def timeline(self, subject: str) -> list[TimelineEntry]:
        if self.down is not None:
            raise self.down
        self.calls += 1
        visible = self.entries
        if self.behind and self.calls <= self.hidden_for:
            visible = visible[: -self.behind]
        # as the audit service answers: subject or actor, or (the person's) named in the data
        return [e for e in visible if subject in (e.subject, e.actor)
                or (e.role == "named" and subject == self.person)]


def entry(sequence: int, type_: str, subject: str, actor: str, person: str,
          data: dict[str, Any], minutes: int = 0, named_in: tuple[str, ...] = ()
          ) -> TimelineEntry:
    own = subject in (person, f"access-{person}")
    return TimelineEntry(
        sequence=sequence, id=str(uuid4()), time=T0 + timedelta(minutes=minutes), type=type_,
        subject=subject,
        actor=actor, role="subject" if own else "actor" if actor == person else "named",
        data=data, named_in=named_in,
    )


def held(person: UUID, own: Sequence[TimelineEntry], invitation: UUID | None = None
         ) -> HeldData:
    return HeldData(
        user_id=person,
        profile=Profile(user_id=person, email="ada@example.org", name="Ada", locale="en",
                        status="active", roles=[], permissions=[], registered_at=T0,
                        locked_until=None, suspended_until=None),
        account=AccountRecords(password_changed_at=T0, via_invitation_id=invitation,
                               scheduled=[]),
        sessions=Sessions(total=1, last_signed_in_at=T0, active=[]),
        own_events=tuple(EventRef(e.id) for e in own),
    )


async def collected(data: HeldData, source: Timelines, wait: float = 0) -> DataExport:
    async def no_pause(_seconds: float) -> None:
        return None

    return await collect_export(data, source, registry=REGISTRY, generated_at=T0, wait=wait,
                                pause=no_pause)


async def test_the_export_holds_the_persons_events_of_every_service_once_in_log_order() -> None:
    person, invitation, other = uuid4(), uuid4(), str(uuid4())
    p = str(person)
    registered = entry(3, REGISTERED, p, p, p, {"email": "ada@example.org"}, minutes=1)
    self_read = entry(5, VIEWED, f"access-{p}", p, p, {"purpose": "settings_page"}, minutes=2)
    staff_read = entry(6, VIEWED, f"access-{p}", other, p, {"purpose": "support"}, minutes=3)
    invited = entry(2, INVITATION_CREATED, str(invitation), other, p,
                    {"invitee_email": "ada@example.org"})
    unrelated = entry(4, REGISTERED, other, other, p, {"email": "bob@example.org"})
    source = Timelines([invited, registered, unrelated, self_read, staff_read])

    document = await collected(
        held(person, [registered, self_read, staff_read], invitation), source)

    assert [e.sequence for e in document.events] == [2, 3, 5, 6]
    assert document.timelines == [p, f"access-{p}", str(invitation)]
    assert document.events[0].data == {"invitee_email": "ada@example.org"}
    assert document.events[1].data["email"] == "ada@example.org"
    assert document.profile.email == "ada@example.org"


async def test_another_persons_data_in_an_event_on_their_stream_is_withheld() -> None:
    person, other, invitation = uuid4(), str(uuid4()), str(uuid4())
    p = str(person)
    edited_someone = entry(7, PROFILE_UPDATED, other, p, p,
                           {"user_id": other, "name": "Bob Builder", "locale": "fr"})
    edited_self = entry(8, PROFILE_UPDATED, p, p, p,
                        {"user_id": p, "name": "Ada King", "locale": "en"})
    invited_someone = entry(9, INVITATION_CREATED, invitation, p, p,
                            {"inviter_id": p, "invitee_email": "bob@example.org"},
                            named_in=("inviter_id",))
    mailed_to_her = entry(10, INVITATION_CREATED, invitation, "system", p,
                          {"inviter_id": other, "invitee_email": "ada@example.org"},
                          named_in=("invitee_email",))
    source = Timelines([edited_someone, edited_self, invited_someone, mailed_to_her],
                       person=person)

    document = await collected(held(person, [edited_self]), source)

    theirs, mine, invitation_sent, named_by_address = document.events
    assert theirs.data == {"user_id": other, "name": WITHHELD, "locale": "fr"}
    assert theirs.withheld == ["name"]
    assert mine.data["name"] == "Ada King" and mine.withheld == []
    assert invitation_sent.data["invitee_email"] == WITHHELD
    assert invitation_sent.withheld == ["invitee_email"]
    assert named_by_address.data["invitee_email"] == "ada@example.org"  # hers: it names her
    assert named_by_address.withheld == []


async def test_a_field_named_in_any_of_the_persons_timelines_is_theirs() -> None:
    person, invitation, other = uuid4(), uuid4(), str(uuid4())
    p = str(person)
    # a record on another stream: its address opens with her key, its subject_id is her
    # invitation; each of her timelines shows it with the fields that name its own subject
    data = {"subject_id": str(invitation), "invitee_email": "ada@example.org"}
    named_by_key = entry(4, INVITATION_CREATED, other, "system", p, data,
                         named_in=("invitee_email",))
    named_by_invitation = TimelineEntry(
        sequence=4, id=named_by_key.id, time=named_by_key.time, type=INVITATION_CREATED,
        subject=other,
        actor="system", role="named", data=data, named_in=("subject_id",))

    class TwoViews(Timelines):
        async def timeline(self, subject: str) -> list[TimelineEntry]:
            return {p: [named_by_key], str(invitation): [named_by_invitation]}.get(subject, [])

    document = await collected(held(person, [], invitation), TwoViews([]))

    (shown,) = document.events
    assert shown.data["invitee_email"] == "ada@example.org" and shown.withheld == []


async def test_an_audit_log_without_identitys_latest_event_gives_no_export() -> None:
    person = uuid4()
    p = str(person)
    registered = entry(1, REGISTERED, p, p, p, {"email": "ada@example.org"})
    latest = entry(2, VIEWED, f"access-{p}", p, p, {"purpose": "self_service"}, minutes=1)
    source = Timelines([registered, latest], behind=1, hidden_for=1000)

    with pytest.raises(ExportUnavailable) as refused:
        await collected(held(person, [registered, latest]), source)

    assert refused.value.retry_after > 0
    assert "1 of your latest events" in str(refused.value)


async def test_an_audit_log_that_catches_up_within_the_wait_gives_the_whole_export() -> None:
    person = uuid4()
    p = str(person)
    registered = entry(1, REGISTERED, p, p, p, {"email": "ada@example.org"})
    latest = entry(2, VIEWED, f"access-{p}", p, p, {"purpose": "self_service"}, minutes=1)
    source = Timelines([registered, latest], behind=1, hidden_for=2)  # two timelines per round

    document = await collected(held(person, [registered, latest]), source, wait=30)

    assert [e.sequence for e in document.events] == [1, 2]
    assert source.calls == 4  # asked once more after the first round came up short


async def test_two_events_alike_to_the_microsecond_both_have_to_be_in_the_log() -> None:
    person = uuid4()
    p = str(person)
    first = entry(1, VIEWED, f"access-{p}", p, p, {"purpose": "a"})
    second = entry(2, VIEWED, f"access-{p}", p, p, {"purpose": "b"})
    source = Timelines([first, second], behind=1, hidden_for=1000)

    with pytest.raises(ExportUnavailable):
        await collected(held(person, [first, second]), source)


async def test_an_event_is_found_in_the_log_by_its_id_not_by_looking_alike() -> None:
    person = uuid4()
    p = str(person)
    registered = entry(1, REGISTERED, p, p, p, {"email": "ada@example.org"})
    # the log has an event of the same subject, type and time, but another one
    look_alike = replace(registered, id=str(uuid4()))

    with pytest.raises(ExportUnavailable, match="1 of your latest events"):
        await collected(held(person, [registered]), Timelines([look_alike]))
    document = await collected(held(person, [registered]), Timelines([registered]))
    assert [e.sequence for e in document.events] == [1]


async def test_an_unreachable_audit_log_gives_no_export_and_says_when_to_come_back() -> None:
    person = uuid4()
    source = Timelines([], down=TimelineUnavailable("the audit log cannot be reached",
                                                    retry_after=7))

    with pytest.raises(ExportUnavailable) as refused:
        await collected(held(person, []), source, wait=30)

    assert refused.value.retry_after == 7
    assert "cannot be reached" in str(refused.value)
