"""The wire shape of every event: CloudEvents 1.0, Kafka binary mode (DESIGN.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from eventkit.envelope import Envelope, EnvelopeError, KafkaRecord, encode_data

USER_ID = "5f0c1a52-54a5-4c57-9d0e-6a1b3f1f0c11"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def registered_envelope(**changes: object) -> Envelope:
    fields: dict[str, object] = {
        "id": UUID("0b7f3e0e-86f1-4a8e-9d7a-3f7a3f0b1c2d"),
        "type": "guestlist.identity.UserRegistered.v1",
        "subject": USER_ID,
        "time": datetime(2025, 8, 25, 9, 30, 15, 123456, tzinfo=UTC),
        "actor_id": "system",
        "sequence": 1,
        "data_json": encode_data({"user_id": USER_ID, "email": "ada@example.org"}),
        "traceparent": TRACEPARENT,
    }
    fields.update(changes)
    return Envelope(**fields)  # type: ignore[arg-type]


def record_of(envelope: Envelope) -> KafkaRecord:
    return envelope.to_kafka("identity.user")


def test_an_envelope_survives_the_trip_through_kafka() -> None:
    # given an event as the outbox relay would publish it
    sent = registered_envelope(extensions={"tenant": "main"})

    # when it is turned into a Kafka record and read back
    received = Envelope.from_record(record_of(sent))

    # then nothing is lost or changed, the data byte for byte
    assert received == sent
    assert received.data_json == sent.data_json
    assert received.data == {"user_id": USER_ID, "email": "ada@example.org"}


def test_the_headers_are_exactly_those_design_lists() -> None:
    record = record_of(registered_envelope())

    assert record.topic == "identity.user"
    assert record.key == USER_ID.encode()
    assert json.loads(record.value) == {"user_id": USER_ID, "email": "ada@example.org"}
    assert dict(record.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"0b7f3e0e-86f1-4a8e-9d7a-3f7a3f0b1c2d",
        "ce_source": b"/guestlist/identity",
        "ce_type": b"guestlist.identity.UserRegistered.v1",
        "ce_subject": USER_ID.encode(),
        "ce_time": b"2025-08-25T09:30:15.123456Z",
        "content-type": b"application/json",
        "traceparent": TRACEPARENT.encode(),
        "ce_actorid": b"system",
        "ce_sequence": b"1",
    }
    assert len(record.headers) == len(dict(record.headers)), "no header is sent twice"


def test_event_time_is_sent_in_utc_whatever_offset_it_was_made_with() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    envelope = registered_envelope(time=datetime(2025, 8, 25, 11, 30, tzinfo=berlin_summer))

    assert dict(record_of(envelope).headers)["ce_time"] == b"2025-08-25T09:30:00.000000Z"


def test_a_naive_event_time_is_refused_before_anything_is_sent() -> None:
    envelope = registered_envelope(time=datetime(2025, 8, 25, 9, 30))

    with pytest.raises(ValueError, match="timezone-aware"):
        record_of(envelope)


def test_the_official_cloudevents_sdk_reads_what_guestlist_sends() -> None:
    # given a message as Guestlist puts it on Kafka
    sent = registered_envelope(actor_id=str(uuid4()), sequence=42)
    record = record_of(sent)

    # when the official SDK's Kafka binding parses it
    event = from_binary(
        KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value),
        JSONFormat(),
    )

    # then it sees the same CloudEvent
    assert event.get_specversion() == "1.0"
    assert event.get_id() == str(sent.id)
    assert event.get_type() == sent.type
    assert event.get_source() == "/guestlist/identity"
    assert event.get_subject() == sent.subject
    assert event.get_time() == sent.time
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == sent.data
    assert event.get_extension("actorid") == sent.actor_id
    assert event.get_extension("sequence") == "42"
    assert event.get_extension("traceparent") is None, "traceparent is not a ce_ attribute"
    assert event.get_extension("partitionkey") == sent.subject


def test_guestlist_reads_what_the_official_sdk_sends() -> None:
    # given an event written with the SDK by a subscriber in another codebase
    moment = datetime(2025, 8, 25, 9, 30, tzinfo=UTC)
    event = CloudEvent(
        attributes={
            "id": "7d3c2b1a-0000-4000-8000-000000000001",
            "source": "/guestlist/identity",
            "type": "guestlist.identity.UserSuspended.v1",
            "subject": USER_ID,
            "time": moment,
            "datacontenttype": "application/json",
            "actorid": "system",
            "sequence": "3",
            "partitionkey": USER_ID,
        },
        data={"user_id": USER_ID, "reason": "spam"},
    )
    message = to_binary(event, JSONFormat())

    # when Guestlist parses the message
    envelope = Envelope.from_kafka(
        message.key if isinstance(message.key, bytes) else str(message.key).encode(),
        message.value,
        list(message.headers.items()),
    )

    # then the attributes arrive; the SDK's partition key is an ordinary extension
    assert envelope.id == UUID("7d3c2b1a-0000-4000-8000-000000000001")
    assert envelope.type == "guestlist.identity.UserSuspended.v1"
    assert envelope.time == moment
    assert envelope.sequence == 3
    assert envelope.data == {"user_id": USER_ID, "reason": "spam"}
    assert envelope.extensions == {"partitionkey": USER_ID}


def headers_without(name: str) -> list[tuple[str, bytes]]:
    return [(key, value) for key, value in record_of(registered_envelope()).headers if key != name]


def headers_with(name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [*headers_without(name), (name, value)]


VALUE = record_of(registered_envelope()).value
KEY = USER_ID.encode()


@pytest.mark.parametrize(
    "missing", ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time",
                "ce_actorid", "ce_sequence"],
)
def test_a_message_missing_a_required_header_is_refused(missing: str) -> None:
    with pytest.raises(EnvelopeError, match=missing.removeprefix("ce_")):
        Envelope.from_kafka(KEY, VALUE, headers_without(missing))


@pytest.mark.parametrize(
    ("header", "value", "complaint"),
    [
        ("ce_specversion", b"0.3", "specversion"),
        ("ce_type", b"com.example.UserRegistered", "guestlist"),
        ("ce_type", b"guestlist.identity.UserRegistered", "guestlist"),
        ("ce_type", b"guestlist.identity.UserRegistered.v0", "guestlist"),
        ("ce_type", b"guestlist.identity.UserRegistered.v1\n", "guestlist"),
        ("ce_id", b"not-a-uuid", "UUID"),
        ("ce_time", b"yesterday", "yesterday"),
        ("ce_time", b"2025-08-25T09:30:00", "offset"),
        ("ce_sequence", b"-1", "ce_sequence"),
        ("ce_sequence", b"1_000", "ce_sequence"),
        ("ce_subject", b"", "subject must not be empty"),
        ("content-type", b"text/plain", "content-type"),
        ("ce_id", b"\xff\xfe", "UTF-8"),
    ],
)
def test_a_message_with_a_bad_header_is_refused(header: str, value: bytes, complaint: str) -> None:
    with pytest.raises(EnvelopeError, match=complaint):
        Envelope.from_kafka(KEY, VALUE, headers_with(header, value))


def test_a_header_sent_twice_is_refused_rather_than_guessed() -> None:
    headers = [*headers_without("nothing"), ("ce_type", b"guestlist.identity.UserDeleted.v1")]

    with pytest.raises(EnvelopeError, match="ce_type"):
        Envelope.from_kafka(KEY, VALUE, headers)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (b"not json", "Expecting value"),
        (b"[1, 2]", "JSON object"),
        (b"\xff", "utf-8"),
        (None, "no value"),
    ],
)
def test_a_message_whose_value_is_not_a_json_object_is_refused(
    value: bytes | None, complaint: str
) -> None:
    with pytest.raises(EnvelopeError, match=complaint):
        Envelope.from_kafka(KEY, value, headers_without("nothing"))


def test_a_message_keyed_by_another_aggregate_is_refused() -> None:
    # A key that is not the subject would put the event on another partition,
    # out of order with the rest of its stream.
    with pytest.raises(EnvelopeError, match="key"):
        Envelope.from_kafka(str(uuid4()).encode(), VALUE, headers_without("nothing"))


def test_a_message_without_a_key_is_still_read() -> None:
    envelope = Envelope.from_kafka(None, VALUE, headers_without("nothing"))

    assert envelope.subject == USER_ID


def test_the_source_defaults_to_the_service_named_in_the_type() -> None:
    envelope = registered_envelope(type="guestlist.invitations.InvitationCreated.v1")

    assert envelope.source == "/guestlist/invitations"
    assert envelope.event_type.service == "invitations"


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "guestlist.identity.userRegistered.v1"},
        {"subject": ""},
        {"actor_id": ""},
        {"sequence": -1},
        {"extensions": {"Bad-Name": "x"}},
        {"extensions": {"sequence": "2"}},
    ],
)
def test_an_envelope_that_could_not_be_read_back_cannot_be_made(changes: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError):
        registered_envelope(**changes)
