"""CloudEvents 1.0 in Kafka binary mode: the one shape every event has on the wire.

Attributes travel as ``ce_*`` headers, the data as the JSON value and the
aggregate id as the key, so a subscriber can route and deduplicate without
parsing the payload. The official ``cloudevents`` SDK reads these messages
(see tests/unit/test_envelope.py).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SYSTEM_ACTOR = "system"

# guestlist.<service>.<EventName>.v<N>
_TYPE_PATTERN = re.compile(r"^guestlist\.([a-z][a-z0-9_]*)\.([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)$")
_SEQUENCE_PATTERN = re.compile(r"^[0-9]+$")
# CloudEvents extension names: lower-case letters and digits only.
_EXTENSION_PATTERN = re.compile(r"^[a-z0-9]{1,20}$")
# Attributes with a meaning of their own; anything else ce_* is an extension.
_CORE_HEADERS = frozenset(
    {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time",
     "ce_actorid", "ce_sequence"}
)


class EnvelopeError(ValueError):
    """A Kafka message that is not a Guestlist CloudEvent."""


@dataclass(frozen=True, slots=True)
class EventType:
    """``guestlist.<service>.<name>.v<version>``, the value of ``ce_type``."""

    service: str
    name: str
    version: int

    def __str__(self) -> str:
        return f"guestlist.{self.service}.{self.name}.v{self.version}"

    @classmethod
    def parse(cls, value: str) -> EventType:
        return _parse_event_type(value)


@functools.lru_cache(maxsize=4096)
def _parse_event_type(value: str) -> EventType:
    # Few distinct types exist and every envelope checks one: parse each once.
    match = _TYPE_PATTERN.fullmatch(value)
    if match is None:
        raise EnvelopeError(f"ce_type {value!r} is not guestlist.<service>.<Name>.v<N>")
    return EventType(service=match[1], name=match[2], version=int(match[3]))


class KafkaRecord(NamedTuple):
    """What goes to (or came from) Kafka for one event."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def source_of(service: str) -> str:
    return f"/guestlist/{service}"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z``, the form ``ce_time`` takes.

    PostgreSQL's ``to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')``
    gives the same text, which lets the outbox relay skip building envelopes.
    """
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SPEC_VERSION_BYTES = SPEC_VERSION.encode()
_CONTENT_TYPE_BYTES = CONTENT_TYPE.encode()


def binary_headers(
    *,
    id: str,
    source: str,
    type: str,
    subject: str,
    time: str,
    actor_id: str,
    sequence: str,
    traceparent: str | None,
    extensions: Mapping[str, str],
) -> list[tuple[str, bytes]]:
    """The Kafka headers of one event, from attribute values already in text form."""
    headers = [
        ("ce_specversion", _SPEC_VERSION_BYTES),
        ("ce_id", id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type.encode()),
        ("ce_subject", subject.encode()),
        ("ce_time", time.encode()),
        ("content-type", _CONTENT_TYPE_BYTES),
        ("ce_actorid", actor_id.encode()),
        ("ce_sequence", sequence.encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    headers.extend((f"ce_{name}", value.encode()) for name, value in extensions.items())
    return headers


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no offset")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event with its CloudEvents attributes.

    ``data`` is kept as the JSON text it was written or received as, so a relay
    or an audit log passes it on byte for byte without re-encoding.
    """

    id: UUID
    type: str
    subject: str
    time: datetime
    actor_id: str
    sequence: int
    data_json: str
    source: str = ""
    traceparent: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        event_type = EventType.parse(self.type)
        # CloudEvents forbids an empty subject; the key and the actor must say something.
        if not self.subject:
            raise EnvelopeError("ce_subject must not be empty")
        if not self.actor_id:
            raise EnvelopeError("ce_actorid must not be empty")
        if self.sequence < 0:
            raise EnvelopeError("ce_sequence must not be negative")
        if not self.source:
            object.__setattr__(self, "source", source_of(event_type.service))
        for name in self.extensions:
            if not _EXTENSION_PATTERN.fullmatch(name) or f"ce_{name}" in _CORE_HEADERS:
                raise EnvelopeError(f"extension name {name!r} is not allowed")

    @property
    def event_type(self) -> EventType:
        return EventType.parse(self.type)

    @property
    def data(self) -> dict[str, Any]:
        loaded = json.loads(self.data_json)
        if not isinstance(loaded, dict):
            raise EnvelopeError("event data must be a JSON object")
        return loaded

    def with_extensions(self, **extensions: str) -> Envelope:
        merged = {**self.extensions, **extensions}
        return Envelope(
            id=self.id, type=self.type, subject=self.subject, time=self.time,
            actor_id=self.actor_id, sequence=self.sequence, data_json=self.data_json,
            source=self.source, traceparent=self.traceparent, extensions=merged,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return binary_headers(
            id=str(self.id), source=self.source, type=self.type, subject=self.subject,
            time=format_time(self.time), actor_id=self.actor_id, sequence=str(self.sequence),
            traceparent=self.traceparent, extensions=self.extensions,
        )

    def to_kafka(self, topic: str) -> KafkaRecord:
        return KafkaRecord(topic, self.subject.encode(), self.data_json.encode(), self.headers())

    @classmethod
    def from_kafka(
        cls, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
    ) -> Envelope:
        """Parse a binary-mode message; raise EnvelopeError naming what is wrong."""
        found: dict[str, str] = {}
        for name, raw in headers:
            lowered = name.lower()
            # Two values for one attribute would make the event mean two things.
            if lowered in found and (lowered.startswith("ce_") or lowered == "content-type"):
                raise EnvelopeError(f"header {lowered} is sent twice")
            try:
                found[lowered] = raw.decode()
            except UnicodeDecodeError as error:
                raise EnvelopeError(f"header {name} is not UTF-8") from error
        if found.get("ce_specversion") != SPEC_VERSION:
            raise EnvelopeError(f"ce_specversion must be {SPEC_VERSION}")
        missing = [h for h in sorted(_CORE_HEADERS) if h not in found]
        if missing:
            raise EnvelopeError(f"missing headers: {', '.join(missing)}")
        # Absent is tolerated (the data is JSON by contract); anything else is not ours.
        media_type = found.get("content-type", CONTENT_TYPE).split(";")[0].strip().lower()
        if media_type != CONTENT_TYPE:
            raise EnvelopeError(f"content-type must be {CONTENT_TYPE}")
        # int() would also take "-1", " 1" or "1_000".
        if not _SEQUENCE_PATTERN.fullmatch(found["ce_sequence"]):
            raise EnvelopeError("ce_sequence must be a decimal number")
        if value is None:
            raise EnvelopeError("message has no value")
        try:
            data_json = value.decode()
            if not isinstance(json.loads(data_json), dict):
                raise EnvelopeError("event data must be a JSON object")
            envelope = cls(
                id=UUID(found["ce_id"]),
                type=found["ce_type"],
                subject=found["ce_subject"],
                time=parse_time(found["ce_time"]),
                actor_id=found["ce_actorid"],
                sequence=int(found["ce_sequence"]),
                data_json=data_json,
                source=found["ce_source"],
                traceparent=found.get("traceparent"),
                extensions={
                    name[3:]: text for name, text in found.items()
                    if name.startswith("ce_") and name not in _CORE_HEADERS
                },
            )
        except (ValueError, UnicodeDecodeError) as error:
            if isinstance(error, EnvelopeError):
                raise
            raise EnvelopeError(str(error)) from error
        if key is not None and key.decode(errors="replace") != envelope.subject:
            raise EnvelopeError("message key differs from ce_subject")
        return envelope

    @classmethod
    def from_record(cls, record: KafkaRecord) -> Envelope:
        return cls.from_kafka(record.key, record.value, record.headers)


def encode_data(data: Mapping[str, Any]) -> str:
    """Compact JSON for event data (stable separators, UTF-8 kept)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
