"""The audit log's rules: what an entry is, how it is hashed and chained, how a run verifies.

Pure: no I/O. The canonical form is RFC 8785 (JSON Canonicalization Scheme);
``services/audit/README.md`` documents it for a verifier in any language.

An entry is hashed in two steps so that a filtered export can still be
verified against a signed head without revealing the entries left out:

    entry_sha256 = SHA-256( JCS(entry object) )
    hash         = SHA-256( JCS({"entry_sha256": hex, "prev_hash": hex}) )
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventkit.envelope import format_time

GENESIS_HASH = bytes(32)
# The JSON string encoder of the standard library (C, ensure_ascii=False): for
# strings it writes exactly what RFC 8785 asks (same escapes, UTF-8 kept).
_string: Any = (
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)
# JCS only allows integers that an IEEE 754 double holds exactly.
_MAX_SAFE_INTEGER = 2**53 - 1
_ZERO = timedelta(0)


def canonical_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, as ``ce_time`` is written (format_time)."""
    if moment.utcoffset() == _ZERO:
        # isoformat is C and several times faster than strftime: this runs per entry.
        return moment.isoformat(timespec="microseconds")[:-6] + "Z"
    return format_time(moment)


class CanonicalFormError(ValueError):
    """A value has no RFC 8785 form (an integer beyond 2^53, say)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event as the log holds it: where and when it arrived and everything it carried."""

    sequence: int
    received_at: datetime
    topic: str
    partition: int
    offset: int
    ce_id: UUID
    ce_source: str
    ce_type: str
    ce_subject: str
    ce_time: datetime
    ce_actorid: str
    ce_sequence: int
    data: str  # the event's JSON text exactly as received
    ce_traceparent: str | None = None
    ce_extensions: Mapping[str, str] = field(default_factory=dict)
    ce_specversion: str = "1.0"

    def canonical_object(self) -> dict[str, Any]:
        """The entry as the JSON object whose canonical form is hashed (no hashes in it)."""
        return {
            "sequence": self.sequence,
            "received_at": canonical_time(self.received_at),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "ce_specversion": self.ce_specversion,
            "ce_id": str(self.ce_id),
            "ce_source": self.ce_source,
            "ce_type": self.ce_type,
            "ce_subject": self.ce_subject,
            "ce_time": canonical_time(self.ce_time),
            "ce_actorid": self.ce_actorid,
            "ce_sequence": self.ce_sequence,
            "ce_traceparent": self.ce_traceparent,
            "ce_extensions": dict(self.ce_extensions),
            "data": self.data,
        }

    def canonical(self) -> bytes:
        """RFC 8785 of :meth:`canonical_object`, written directly: it is on every hot path.

        The keys are ASCII, so JCS's UTF-16 key order is plain sorting; the
        property test in tests/unit/test_audit_domain.py compares it with ``rfc8785``.
        """
        return canonical_entry(
            sequence=self.sequence, received_at=canonical_time(self.received_at),
            topic=self.topic, partition=self.partition, offset=self.offset,
            ce_specversion=self.ce_specversion, ce_id=str(self.ce_id), ce_source=self.ce_source,
            ce_type=self.ce_type, ce_subject=self.ce_subject,
            ce_time=canonical_time(self.ce_time), ce_actorid=self.ce_actorid,
            ce_sequence=self.ce_sequence, ce_traceparent=self.ce_traceparent,
            ce_extensions=self.ce_extensions, data=self.data,
        )

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()


# The entry object with its keys in RFC 8785 order. Times and the UUID are
# written as they are (their characters never need escaping), numbers with %d,
# every other string through the JSON string encoder.
ENTRY_TEMPLATE = (
    '{"ce_actorid":%s,"ce_extensions":{%s},"ce_id":"%s","ce_sequence":%d,"ce_source":%s,'
    '"ce_specversion":%s,"ce_subject":%s,"ce_time":"%s","ce_traceparent":%s,"ce_type":%s,'
    '"data":%s,"offset":%d,"partition":%d,"received_at":"%s","sequence":%d,"topic":%s}'
)


# A packed row (ChainCheck.feed_packed): the template with every number as its
# decimal text, since PostgreSQL's decimal form of an integer is JCS's.
PACKED_TEMPLATE = ENTRY_TEMPLATE.replace("%d", "%s")
PACKED_LINK_TEMPLATE = '{"entry_sha256":"%s","prev_hash":"%s"}'
PACKED_FIELDS = 18
UNIT_SEPARATOR = "\x1f"
# Decimal texts this short are integers an IEEE 754 double holds exactly.
_SAFE_DIGITS = len(str(_MAX_SAFE_INTEGER)) - 1


def _all_safe(*numbers: str) -> bool:
    try:
        return all(abs(int(number)) <= _MAX_SAFE_INTEGER for number in numbers)
    except ValueError:
        return False


def canonical_extensions(extensions: Mapping[str, str]) -> str:
    """The members of the ``ce_extensions`` object, sorted, without the braces."""
    return ",".join(f"{_string(name)}:{_string(extensions[name])}" for name in sorted(extensions))


def canonical_entry(
    *, sequence: int, received_at: str, topic: str, partition: int, offset: int,
    ce_specversion: str, ce_id: str, ce_source: str, ce_type: str, ce_subject: str,
    ce_time: str, ce_actorid: str, ce_sequence: int, ce_traceparent: str | None,
    ce_extensions: Mapping[str, str], data: str,
) -> bytes:
    """RFC 8785 of an entry whose times are already in canonical text (:func:`canonical_time`)."""
    for number in (sequence, partition, offset, ce_sequence):
        if not -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER:
            raise CanonicalFormError(f"{number} is outside the integers JSON can carry")
    return (ENTRY_TEMPLATE % (
        _string(ce_actorid), canonical_extensions(ce_extensions), ce_id, ce_sequence,
        _string(ce_source), _string(ce_specversion), _string(ce_subject), ce_time,
        "null" if ce_traceparent is None else _string(ce_traceparent), _string(ce_type),
        _string(data), offset, partition, received_at, sequence, _string(topic),
    )).encode()


def link_hash(entry_sha256: bytes, prev_hash: bytes) -> bytes:
    """SHA-256 of JCS({"entry_sha256": hex, "prev_hash": hex}): the entry's chained hash."""
    return hashlib.sha256(
        b'{"entry_sha256":"%s","prev_hash":"%s"}' % (entry_sha256.hex().encode(),
                                                     prev_hash.hex().encode())
    ).digest()


@dataclass(frozen=True, slots=True)
class ChainedEntry:
    entry: LogEntry
    prev_hash: bytes
    hash: bytes


def chain(entries: Iterable[LogEntry], *, prev_hash: bytes) -> list[ChainedEntry]:
    """Hash ``entries`` in order after an entry whose hash is ``prev_hash``."""
    chained: list[ChainedEntry] = []
    for entry in entries:
        hashed = link_hash(entry.digest(), prev_hash)
        chained.append(ChainedEntry(entry, prev_hash, hashed))
        prev_hash = hashed
    return chained


@dataclass(slots=True)
class ChainCheck:
    """Verifies a run of stored entries, fed in sequence order, batch by batch.

    An entry is bad when its sequence is not the next one (a gap or a
    repeat), when its prev_hash is not the previous entry's hash, or when
    its hash is not the one its content gives. Checking goes on after the
    first bad entry only to count; ``first_bad`` keeps the earliest.
    """

    prev_hash: bytes
    next_sequence: int
    checked: int = 0
    first_bad: int | None = None
    reason: str | None = None
    head_sequence: int | None = None
    head_hash: bytes | None = None
    # Hashes at sequences a checkpoint names, to compare with what was signed.
    wanted: set[int] = field(default_factory=set)
    found: dict[int, bytes] = field(default_factory=dict)

    def feed(self, entry: LogEntry, prev_hash: bytes, stored_hash: bytes) -> None:
        self.checked += 1
        if self.first_bad is None:
            if entry.sequence != self.next_sequence:
                self._bad(self.next_sequence, f"sequence {self.next_sequence} is missing")
            elif prev_hash != self.prev_hash:
                self._bad(entry.sequence, "prev_hash is not the previous entry's hash")
            else:
                try:
                    intact = link_hash(entry.digest(), prev_hash) == stored_hash
                except CanonicalFormError:
                    self._bad(entry.sequence, "the entry has no canonical form")
                else:
                    if not intact:
                        self._bad(entry.sequence, "hash does not match the entry's content")
        if entry.sequence in self.wanted:
            self.found[entry.sequence] = stored_hash
        self.prev_hash = stored_hash
        self.next_sequence = entry.sequence + 1
        self.head_sequence, self.head_hash = entry.sequence, stored_hash

    def feed_packed(self, rows: Iterable[Sequence[Any]]) -> int:
        """:meth:`feed` for rows of one text (``PACKED_ENTRY``, services/audit/recompute.py).

        Each row is the entry's columns joined by ``UNIT_SEPARATOR``: numbers in
        decimal, times in canonical text, a null traceparent as ``""`` and any
        other prefixed with ``"v"``, extensions as jsonb text, the hashes in hex.
        One text per row is far cheaper to receive than eighteen columns, and the
        canonical form is one template fill. The same checks as :meth:`feed`.

        A value holding the separator itself makes the row ambiguous: checking
        stops before it and the number of rows consumed is returned, for the
        caller to feed that entry through :meth:`feed` and go on after it.
        """
        sha256, string, template = hashlib.sha256, _string, PACKED_TEMPLATE
        link_template = PACKED_LINK_TEMPLATE
        separator = UNIT_SEPARATOR
        wanted, found = self.wanted, self.found
        prev, expected, first_bad = self.prev_hash.hex(), self.next_sequence, self.first_bad
        sequence, stored, consumed = self.head_sequence, "", 0
        for (row,) in rows:
            fields = row.split(separator)
            if len(fields) != PACKED_FIELDS:
                break
            (number, received_at, topic, partition, offset, specversion, ce_id, source,
             ce_type, subject, ce_time, actor, ce_sequence, traceparent, extensions, data,
             prev_hash, stored) = fields
            sequence = int(number)
            if first_bad is None:
                if sequence != expected:
                    self._bad(expected, f"sequence {expected} is missing")
                elif prev_hash != prev:
                    self._bad(sequence, "prev_hash is not the previous entry's hash")
                elif ((len(offset) > _SAFE_DIGITS or len(ce_sequence) > _SAFE_DIGITS
                       or len(partition) > _SAFE_DIGITS or len(number) > _SAFE_DIGITS)
                      and not _all_safe(offset, ce_sequence, partition, number)):
                    self._bad(sequence, "the entry has no canonical form")
                else:
                    try:
                        members = "" if extensions == "{}" else canonical_extensions(
                            json.loads(extensions))
                    except (TypeError, ValueError, AttributeError):
                        members = None
                    if members is None:
                        self._bad(sequence, "the entry has no canonical form")
                    else:
                        text = template % (
                            string(actor), members, ce_id, ce_sequence, string(source),
                            string(specversion), string(subject), ce_time,
                            string(traceparent[1:]) if traceparent else "null",
                            string(ce_type), string(data), offset, partition, received_at,
                            number, string(topic))
                        link = link_template % (sha256(text.encode()).hexdigest(), prev_hash)
                        if sha256(link.encode()).hexdigest() != stored:
                            self._bad(sequence, "hash does not match the entry's content")
                first_bad = self.first_bad
            if sequence in wanted:
                found[sequence] = bytes.fromhex(stored)
            prev, expected = stored, sequence + 1
            consumed += 1
        if consumed:
            self.prev_hash, self.next_sequence = bytes.fromhex(prev), expected
            self.checked += consumed
            self.head_sequence, self.head_hash = sequence, self.prev_hash
        return consumed

    def fail(self, sequence: int, reason: str) -> None:
        if self.first_bad is None or sequence < self.first_bad:
            self.first_bad, self.reason = sequence, reason

    def _bad(self, sequence: int, reason: str) -> None:
        self.first_bad, self.reason = sequence, reason

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def checkpoint_statement(
    *, sequence: int, head_hash: bytes, signed_at: datetime, key_id: str
) -> bytes:
    """The bytes a checkpoint signs: JCS of what it asserts."""
    return (
        f'{{"head_hash":"{head_hash.hex()}","key_id":{_string(key_id)},'
        f'"log":"guestlist.audit","sequence":{sequence},'
        f'"signed_at":"{canonical_time(signed_at)}"}}'
    ).encode()


def checkpoint_due(*, head: int, last_signed: int, every: int) -> list[int]:
    """The sequences in (last_signed, head] that are multiples of ``every``."""
    first = (last_signed // every + 1) * every
    return list(range(first, head + 1, every))
