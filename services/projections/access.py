"""PersonalDataViewed for every person a response showed, through the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventkit.envelope import encode_data
from eventkit.http.auth import Principal
from eventkit.postgres_store import PostgresEventStore
from eventkit.store import NewEvent
from schemas.access import ProjectionsPersonalDataViewed


def actor_uuid(principal: Principal) -> UUID | None:
    try:
        return UUID(principal.subject)
    except ValueError:
        return None


async def record_viewed(
    store: PostgresEventStore, *, topic: str, principal: Principal,
    subjects: Sequence[UUID], fields: Sequence[str], endpoint: str, purpose: str,
) -> None:
    """One event per person shown, appended in one transaction; nothing when nobody was."""
    if not subjects:
        return
    actor = actor_uuid(principal)
    events = [
        NewEvent(type=ProjectionsPersonalDataViewed.event_type, topic=topic, data_json=encode_data(
            ProjectionsPersonalDataViewed(actor_id=actor, subject_id=subject, fields=tuple(fields),
                                          endpoint=endpoint, purpose=purpose)
            .model_dump(mode="json")))
        for subject in subjects
    ]
    # One reader's reads at the same moment take turns on her access stream (a log).
    await store.append_to_log(f"projections-access-{principal.subject}", events,
                              actor_id=principal.subject)
