"""A consumer group of a service, as ``ServiceRuntime`` runs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eventkit.consumer import BatchHandler, ConsumerSettings, Handler


@dataclass(frozen=True, slots=True)
class Subscription:
    """A consumer group of this service: what it reads and how it applies each event."""

    group: str
    handler: Handler | None = None
    topics: Sequence[str] = ()
    # A regular expression over topic names, for "every topic" readers such as the audit log.
    pattern: str | None = None
    settings: ConsumerSettings = field(default_factory=ConsumerSettings)
    # Instead of ``handler``: applies all new events of a polled batch at once.
    batch_handler: BatchHandler | None = None

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batch_handler is None):
            raise ValueError(f"subscription {self.group}: give a handler or a batch handler")
