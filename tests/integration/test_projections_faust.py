"""faust-streaming against our broker: failed sign-ins per account in hopping windows.

The security monitor counts windows in SQL (docs/DESIGN.md says why, with
the figures of ``bench/faust_windows.py``). This smoke test keeps the faust
side of that comparison honest: the bench's faust app, run against the
session's Kafka with each processing guarantee, counts identity's contract
events per account in 60-second windows every 30 seconds by the events' own
time, and a second instance of the app recovers the same counts from the
table's changelog topic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_projections_directory import Topics, user_event

from bench.faust_windows import failed_sign_ins_app, window_counts
from eventkit.envelope import Envelope
from eventkit.publisher import KafkaPublisher
from schemas.identity import LoginFailed, LoginSucceeded

pytestmark = pytest.mark.integration


def failed(user_id: uuid.UUID, at: datetime) -> Envelope:
    return user_event(LoginFailed(user_id=user_id, failure="wrong_password",
                                  consecutive_failures=1, client_address_hash="ab" * 32),
                      user_id, at=at)


async def until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_faust_app_counts_failed_sign_ins_per_account_in_hopping_windows(
    kafka_bootstrap: str, kafka_topics: Topics, guarantee: str
) -> None:
    topic = await kafka_topics("identity.user", 3)
    minute = int(datetime.now(UTC).timestamp()) // 60 * 60 - 600
    t0 = datetime.fromtimestamp(minute, UTC)
    ana, bo = uuid.uuid4(), uuid.uuid4()
    events = [
        failed(ana, t0), failed(ana, t0 + timedelta(seconds=10)),
        failed(ana, t0 + timedelta(seconds=40)), failed(ana, t0 + timedelta(seconds=70)),
        failed(bo, t0 + timedelta(seconds=5)),
        # Not a failure: seen, not counted.
        user_event(LoginSucceeded(user_id=ana, session_id=uuid.uuid4(),
                                  expires_at=t0 + timedelta(hours=1)), ana,
                   at=t0 + timedelta(seconds=20)),
    ]
    # Each failure is in two windows: the one starting at the last 30-second mark, and the
    # one 30 seconds before.
    expected = {
        (str(ana), minute - 30.0): 2, (str(ana), minute + 0.0): 3,
        (str(ana), minute + 30.0): 2, (str(ana), minute + 60.0): 1,
        (str(bo), minute - 30.0): 1, (str(bo), minute + 0.0): 1,
    }
    publisher = KafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        await publisher.publish([e.to_kafka(topic) for e in events])
    finally:
        await publisher.stop()

    app_id = f"smoke-{uuid.uuid4().hex[:8]}"
    seen = 0

    def on_event() -> None:
        nonlocal seen
        seen += 1

    def app() -> tuple[Any, Any]:
        return failed_sign_ins_app(
            app_id=app_id, bootstrap=kafka_bootstrap, topic=topic, partitions=3,
            size=timedelta(seconds=60), step=timedelta(seconds=30), guarantee=guarantee,
            on_event=on_event)

    first, table = app()
    await first.start()
    try:
        await until(lambda: seen == len(events))
        assert window_counts(table) == expected
    finally:
        await first.stop()

    # Another instance of the app (same group) rebuilds the table from its changelog topic,
    # and the offsets committed by the first leave it nothing to count again.
    second, recovered = app()
    await second.start()
    try:
        await until(lambda: window_counts(recovered) == expected)
        await asyncio.sleep(2.0)  # anything counted twice would show up by now
        assert window_counts(recovered) == expected
        assert seen == len(events)
    finally:
        await second.stop()
