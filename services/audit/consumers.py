"""The one consumer of the audit service: every event of every topic, into the log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from eventkit.consumer import ConsumerSettings, Delivery
from eventkit.postgres_store import PostgresTransaction
from eventkit.runtime import Subscription
from eventkit.store import Clock, Transaction, utc_now
from services.audit import log
from services.audit.domain import ChainedEntry
from services.audit.settings import AuditSettings

# Called inside the append's transaction with what was appended (checkpoints use it).
Appended = Callable[[PostgresTransaction, Sequence[ChainedEntry]], Awaitable[None]]


def log_subscription(
    settings: AuditSettings, *, on_appended: Appended | None = None, clock: Clock = utc_now
) -> Subscription:
    async def append_to_log(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        if not isinstance(tx, PostgresTransaction):
            raise TypeError("the audit log lives in PostgreSQL")
        appended = await log.append(tx.connection, deliveries, received_at=clock())
        if appended and on_appended is not None:
            await on_appended(tx, appended)

    return Subscription(
        group=settings.audit_consumer_group,
        batch_handler=append_to_log,
        pattern=settings.audit_topic_pattern,
        # Big polls make big appends: one INSERT and one commit per batch.
        settings=ConsumerSettings(max_poll_records=2000, commit_every=2000),
    )
