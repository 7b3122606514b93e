"""The GDPR data export: what identity holds on a person, plus their events from every service.

Identity's own part (profile, account records, sessions) comes from its
database. The events come from the audit log, which holds every service's:
the person's own timeline, the timeline of their ``access-`` stream (reads of
their data by anyone) and that of the invitation they registered with. An
export is whole or not given: when the audit log cannot answer, or does not
yet hold every event identity wrote on the person, the caller gets
:class:`ExportUnavailable` instead of a partial document.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventkit.registry import EventRegistry, personal_fields
from services.identity.audit_timeline import TimelineEntry, TimelineSource, TimelineUnavailable
from services.identity.responses import (
    AccountRecords,
    DataExport,
    ExportedEvent,
    Profile,
    Sessions,
)

WITHHELD = "[withheld]"
BEHIND_RETRY_AFTER = 2


@dataclass(frozen=True, slots=True)
class EventRef:
    """An event identity wrote, recognised in the audit log by its CloudEvents id."""

    id: str


@dataclass(frozen=True, slots=True)
class HeldData:
    """Identity's own records of the person, read in one transaction."""

    user_id: UUID
    profile: Profile
    account: AccountRecords
    sessions: Sessions
    own_events: tuple[EventRef, ...]  # the person's two streams, as identity has them

    @property
    def timelines(self) -> tuple[str, ...]:
        own = (str(self.user_id), f"access-{self.user_id}")
        invitation = self.account.via_invitation_id
        return own if invitation is None else (*own, str(invitation))


class ExportUnavailable(Exception):
    """No whole export can be given now; ``retry_after`` seconds is a fair wait."""

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


async def collect_export(
    held: HeldData, source: TimelineSource, *, registry: EventRegistry,
    generated_at: datetime, wait: float,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DataExport:
    """The export, once the audit log holds every event identity wrote on the person.

    Events reach the log through the outbox and Kafka a moment after their
    commit, so a log that is behind is asked again for up to ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            timelines = {subject: await source.timeline(subject) for subject in held.timelines}
        except TimelineUnavailable as error:
            raise ExportUnavailable(str(error), retry_after=error.retry_after) from error
        missing = missing_events(held.own_events, timelines)
        if not missing:
            return assemble(held, timelines, registry=registry, generated_at=generated_at)
        if time.monotonic() + delay > deadline:
            raise ExportUnavailable(
                f"the audit log does not hold {len(missing)} of your latest events yet",
                retry_after=BEHIND_RETRY_AFTER,
            )
        await pause(delay)
        delay = min(delay * 2, 1.0)


def missing_events(
    own: Sequence[EventRef], timelines: Mapping[str, Sequence[TimelineEntry]]
) -> list[EventRef]:
    """Identity's events on the person that the audit log's timelines do not show."""
    logged = {entry.id for entries in timelines.values() for entry in entries}
    return [event for event in own if event.id not in logged]


def assemble(
    held: HeldData, timelines: Mapping[str, Sequence[TimelineEntry]], *,
    registry: EventRegistry, generated_at: datetime,
) -> DataExport:
    """One document: identity's records and every timeline's events once, in log order."""
    by_sequence: dict[int, TimelineEntry] = {}
    for entries in timelines.values():
        for entry in entries:
            seen = by_sequence.get(entry.sequence)
            # Each timeline names its own subject: a field naming any of them is the person's.
            by_sequence[entry.sequence] = entry if seen is None else replace(
                seen, named_in=tuple(sorted({*seen.named_in, *entry.named_in})))
    own_subjects = set(held.timelines)
    events = [
        _exported(by_sequence[sequence], own_subjects, registry)
        for sequence in sorted(by_sequence)
    ]
    return DataExport(
        user_id=held.user_id, generated_at=generated_at, profile=held.profile,
        account=held.account, sessions=held.sessions, timelines=list(held.timelines),
        events=events,
    )


def _exported(
    entry: TimelineEntry, own_subjects: set[str], registry: EventRegistry
) -> ExportedEvent:
    data, withheld = entry.data, list[str]()
    # An event on someone else's stream (a profile the person edited, an invitation they
    # sent) carries that someone's personal data: only fields naming the person are theirs.
    if entry.subject not in own_subjects and isinstance(data, dict):
        data, withheld = _withhold(entry, data, registry)
    return ExportedEvent(
        sequence=entry.sequence, time=entry.time, type=entry.type, subject=entry.subject,
        actor_id=entry.actor, role=entry.role, data=data, withheld=withheld,
    )


def _withhold(
    entry: TimelineEntry, data: dict[str, Any], registry: EventRegistry
) -> tuple[dict[str, Any], list[str]]:
    if entry.type in registry:
        personal = personal_fields(registry.class_for(entry.type))
    else:  # not a type this service knows: nothing in it can be told apart
        personal = tuple(sorted(data))
    fields = [name for name in personal
              if data.get(name) is not None and name not in entry.named_in]
    return {**data, **dict.fromkeys(fields, WITHHELD)}, fields
