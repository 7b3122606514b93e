"""The whole event catalog: every event class and every upcaster, in one list each.

A service builds its registry from here in its composition root; nothing is
registered as a side effect of importing a module.
"""

from __future__ import annotations

from eventkit.registry import EventData, EventRegistry, Upcaster
from schemas.access import ACCESS_EVENTS
from schemas.identity import PLATFORM_EVENTS, USER_EVENTS
from schemas.invitations import INVITATION_EVENTS
from schemas.notifications import DELIVERY_EVENTS

EVENT_CLASSES: tuple[type[EventData], ...] = (
    *USER_EVENTS,
    *PLATFORM_EVENTS,
    *INVITATION_EVENTS,
    *DELIVERY_EVENTS,
    *ACCESS_EVENTS,
)

# One entry per retired version: Upcaster(service, name, from_version, function).
UPCASTERS: tuple[Upcaster, ...] = ()


def build_registry() -> EventRegistry:
    return EventRegistry(EVENT_CLASSES, UPCASTERS)
