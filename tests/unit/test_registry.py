"""Event types, versions and upcasting (eventkit.registry), on a small made-up catalog."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, Field, ValidationError

from eventkit.envelope import Envelope
from eventkit.registry import (
    EventData,
    EventRegistry,
    InvalidEventData,
    PersonalData,
    UnknownEventType,
    Upcaster,
    personal_fields,
)

MEMBER_TOPIC = "club.member"


class MemberJoined(EventData, service="club", name="MemberJoined", version=3, topic=MEMBER_TOPIC):
    """v1 had ``full_name``; v2 renamed it ``display_name``; v3 added ``level``."""

    member_id: UUID
    display_name: PersonalData
    nickname: PersonalData | None = None
    joined_at: AwareDatetime
    level: int = Field(ge=1)
    badges: tuple[str, ...] = ()


class MemberLeft(EventData, service="club", name="MemberLeft", version=1, topic=MEMBER_TOPIC):
    member_id: UUID
    note: str | None = None


def rename_full_name(data: dict[str, Any]) -> dict[str, Any]:
    renamed = {key: value for key, value in data.items() if key != "full_name"}
    return {**renamed, "display_name": data["full_name"]}


def add_first_level(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "level": 1}


UPCASTERS = (
    Upcaster("club", "MemberJoined", 2, add_first_level),
    Upcaster("club", "MemberJoined", 1, rename_full_name),
)
MEMBER_ID = UUID("6a2d8d3e-2f7e-4b7b-9a43-0f5d3c1e9b10")
JOINED_AT = datetime(2025, 8, 25, 9, 0, tzinfo=UTC)


def registry() -> EventRegistry:
    return EventRegistry([MemberJoined, MemberLeft], UPCASTERS)


def envelope_of(type_name: str, data: dict[str, Any]) -> Envelope:
    return Envelope(
        id=uuid4(), type=type_name, subject=str(MEMBER_ID), time=JOINED_AT,
        actor_id="system", sequence=1, data_json=json.dumps(data),
    )


def test_an_event_declares_its_wire_identity_in_its_class_statement() -> None:
    assert str(MemberJoined.event_type) == "guestlist.club.MemberJoined.v3"
    assert MemberJoined.topic == MEMBER_TOPIC


def test_a_v1_payload_is_read_as_the_newest_version_step_by_step() -> None:
    # given data a v1 producer wrote long ago
    old = envelope_of(
        "guestlist.club.MemberJoined.v1",
        {"member_id": str(MEMBER_ID), "full_name": "Ada", "joined_at": "2025-08-25T09:00:00Z"},
    )

    # when a current reader decodes it
    event = registry().decode(old)

    # then both upcasters ran, v1->v2 first, and the result is a v3 event
    assert event == MemberJoined(
        member_id=MEMBER_ID, display_name="Ada", joined_at=JOINED_AT, level=1
    )


def test_a_v2_payload_only_takes_the_steps_it_still_needs() -> None:
    old = envelope_of(
        "guestlist.club.MemberJoined.v2",
        {"member_id": str(MEMBER_ID), "display_name": "Ada", "joined_at": "2025-08-25T09:00:00Z"},
    )

    event = registry().decode(old)

    assert isinstance(event, MemberJoined)
    assert (event.display_name, event.level) == ("Ada", 1)


def test_a_field_added_by_a_newer_producer_is_ignored_on_read() -> None:
    # given a producer that added an optional field (not a new version, per DESIGN.md)
    newer = envelope_of(
        "guestlist.club.MemberLeft.v1", {"member_id": str(MEMBER_ID), "farewell": "bye"}
    )

    # when an older reader decodes it, then it reads what it knows
    assert registry().decode(newer) == MemberLeft(member_id=MEMBER_ID)


def test_an_unknown_field_is_refused_when_the_event_is_made() -> None:
    with pytest.raises(ValidationError, match="farewell"):
        MemberLeft(member_id=MEMBER_ID, farewell="bye")  # type: ignore[call-arg]


def test_events_cannot_be_changed_once_made() -> None:
    event = MemberLeft(member_id=MEMBER_ID)

    with pytest.raises(ValidationError):
        event.note = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("type_name", "complaint"),
    [
        ("guestlist.club.MemberExpelled.v1", "not a registered event type"),
        ("guestlist.club.MemberJoined.v4", "newer than this reader"),
        ("guestlist.club.MemberJoined", "is not guestlist"),
        ("org.example.MemberJoined.v1", "is not guestlist"),
    ],
)
def test_a_type_the_registry_cannot_read_is_named_in_the_error(
    type_name: str, complaint: str
) -> None:
    with pytest.raises(UnknownEventType, match=complaint):
        registry().decode_data(type_name, {"member_id": str(MEMBER_ID)})
    assert type_name not in registry()


def test_data_that_does_not_fit_the_type_is_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidEventData, match="member_id"):
        registry().decode_data("guestlist.club.MemberLeft.v1", {"member_id": "nobody"})


def test_encode_writes_the_compact_json_that_decode_reads() -> None:
    event = MemberLeft(member_id=MEMBER_ID, note="moved away")

    text = registry().encode(event)

    assert text == f'{{"member_id":"{MEMBER_ID}","note":"moved away"}}'
    assert registry().decode_data(str(MemberLeft.event_type), json.loads(text)) == event


def test_an_unregistered_event_cannot_be_encoded() -> None:
    # A subscriber could not read it: producers only send what the catalog lists.
    only_members_leaving = EventRegistry([MemberLeft])
    joined = MemberJoined(member_id=MEMBER_ID, display_name="Ada", joined_at=JOINED_AT, level=1)

    with pytest.raises(UnknownEventType, match="not registered"):
        only_members_leaving.encode(joined)


def test_the_registry_lists_types_and_topics() -> None:
    catalog = registry()

    assert catalog.types() == ("guestlist.club.MemberJoined.v3", "guestlist.club.MemberLeft.v1")
    assert catalog.topics() == (MEMBER_TOPIC,)
    assert catalog.topic_of("guestlist.club.MemberJoined.v1") == MEMBER_TOPIC
    assert catalog.class_for("guestlist.club.MemberJoined.v2") is MemberJoined
    assert "guestlist.club.MemberJoined.v1" in catalog


def test_a_gap_in_the_upcaster_chain_stops_the_registry_from_being_built() -> None:
    # given v1->v2 but no v2->v3
    with pytest.raises(ValueError, match=r"no upcaster from guestlist\.club\.MemberJoined\.v2"):
        EventRegistry([MemberJoined], [UPCASTERS[1]])


def test_two_classes_claiming_one_type_stop_the_registry_from_being_built() -> None:
    class MemberLeftAgain(
        EventData, service="club", name="MemberLeft", version=1, topic=MEMBER_TOPIC
    ):
        member_id: UUID

    with pytest.raises(ValueError, match="registered twice"):
        EventRegistry([MemberLeft, MemberLeftAgain])


def test_an_upcaster_for_an_event_nobody_registered_is_refused() -> None:
    with pytest.raises(ValueError, match="no registered event class"):
        EventRegistry([MemberLeft], [Upcaster("club", "MemberJoined", 1, rename_full_name)])


def test_an_abstract_base_without_identity_cannot_be_registered() -> None:
    class Membership(EventData):
        member_id: UUID

    with pytest.raises(TypeError, match="declares no"):
        EventRegistry([Membership])


@pytest.mark.parametrize(
    ("identity", "complaint"),
    [
        ({"service": "club", "name": "MemberJoined", "version": 1}, "give all of"),
        ({"service": "club", "name": "memberJoined", "version": 1, "topic": "club.member"},
         "is not guestlist"),
        ({"service": "club", "name": "MemberJoined", "version": 0, "topic": "club.member"},
         "is not guestlist"),
        ({"service": "club", "name": "MemberJoined", "version": 1, "topic": "identity.user"},
         "not one of club's"),
    ],
)
def test_a_malformed_identity_fails_where_the_class_is_declared(
    identity: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(TypeError, match=complaint):
        type("Broken", (EventData,), {"__annotations__": {"member_id": UUID}}, **identity)


def test_personal_fields_are_found_also_when_optional() -> None:
    assert personal_fields(MemberJoined) == ("display_name", "nickname")
    assert personal_fields(MemberLeft) == ()


def test_personal_fields_are_marked_in_the_json_schema() -> None:
    properties = MemberJoined.model_json_schema()["properties"]

    assert properties["display_name"]["x-personal-data"] is True
    assert properties["nickname"]["anyOf"][0]["x-personal-data"] is True
    assert "x-personal-data" not in properties["member_id"]


# Offsets in whole minutes: RFC 3339 has no seconds in an offset.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
members_joined = st.builds(
    MemberJoined,
    member_id=st.uuids(),
    display_name=st.text(min_size=1),
    nickname=st.none() | st.text(),
    joined_at=st.datetimes(timezones=offsets),
    level=st.integers(min_value=1, max_value=2**53),
    badges=st.lists(st.text(), max_size=3).map(tuple),
)


@given(event=members_joined)
def test_any_event_survives_encode_then_decode(event: MemberJoined) -> None:
    catalog = registry()

    envelope = envelope_of(str(event.event_type), json.loads(catalog.encode(event)))
    received = Envelope.from_record(envelope.to_kafka(event.topic))

    assert catalog.decode(received) == event
