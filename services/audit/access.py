"""Who read, exported or replayed the log: access events through the outbox, so in the log too."""

from __future__ import annotations

from uuid import UUID

from eventkit.envelope import encode_data
from eventkit.http.auth import Principal
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventData
from eventkit.store import NewEvent


def actor_uuid(principal: Principal | None) -> UUID | None:
    if principal is None:
        return None
    try:
        return UUID(principal.subject)
    except ValueError:
        return None


async def record_access(
    store: PostgresEventStore, event: EventData, *, topic: str, actor: str
) -> None:
    """Append ``event`` to the actor's access stream; the relay takes it to Kafka."""
    await store.append(
        f"audit-access-{actor}", None,
        [NewEvent(type=event.event_type, topic=topic,
                  data_json=encode_data(event.model_dump(mode="json")))],
        actor_id=actor,
    )
