"""PersonalDataViewed on ``invitations.access``: the trace every read of an invitee's data leaves.

The subject is the invitation id (the invitee has no account yet; projections
names invitees the same way). The event goes to a stream of its own,
``access-<invitation id>``, in the read's transaction and through the outbox,
so an audited read never conflicts with a change to the invitation and is
published exactly when the read happened. Reads of one invitation at the same
moment take turns on that stream (``Transaction.append_to_log``: a transaction-scoped
advisory lock on the stream id).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventkit.registry import EventRegistry
from eventkit.store import NewEvent, Transaction
from schemas.access import InvitationsPersonalDataViewed

SYSTEM_ACTOR = "system"


async def record_viewed(
    tx: Transaction, registry: EventRegistry, *, topic: str, actor: UUID | None,
    invitation_id: UUID, fields: Sequence[str], endpoint: str, purpose: str,
) -> None:
    """One event for the invitee shown; nothing when no field was shown in clear."""
    if not fields:
        return
    event = InvitationsPersonalDataViewed(
        actor_id=actor, subject_id=invitation_id, fields=tuple(fields), endpoint=endpoint,
        purpose=purpose,
    )
    new = NewEvent(type=event.event_type, topic=topic, data_json=registry.encode(event))
    # Concurrent reads of one invitation take turns on its stream until their commit (moments
    # later) instead of racing for the same version and failing.
    await tx.append_to_log(f"access-{invitation_id}", [new],
                           actor_id=str(actor) if actor is not None else SYSTEM_ACTOR)
