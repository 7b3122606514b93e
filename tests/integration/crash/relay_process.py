"""A relay in its own process, for the crash test.

``--die-after-ack`` kills the process with ``os._exit`` right after Kafka
acknowledged the first batch and before the outbox rows are marked published:
the worst moment for a relay to die.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

from eventkit.outbox import PostgresOutbox
from eventkit.publisher import KafkaPublisher
from eventkit.relay import OutboxRelay

DIED = 86


class OutboxThatDiesBeforeMarking(PostgresOutbox):
    async def mark_published(self, positions: Sequence[int]) -> None:
        os._exit(DIED)


async def main(database_url: str, bootstrap: str, die_after_ack: bool, batch_size: int) -> None:
    outbox_type = OutboxThatDiesBeforeMarking if die_after_ack else PostgresOutbox
    outbox = outbox_type(database_url)
    publisher = KafkaPublisher(bootstrap)
    await publisher.start()
    try:
        async with outbox.leadership():
            await OutboxRelay(outbox, publisher, batch_size=batch_size).publish_pending()
    finally:
        await publisher.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("bootstrap")
    parser.add_argument("--die-after-ack", action="store_true")
    parser.add_argument("--batch-size", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.database_url, args.bootstrap, args.die_after_ack, args.batch_size))
