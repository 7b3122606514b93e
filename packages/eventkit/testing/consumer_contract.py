"""What every consumer backend promises, written once.

A test module subclasses ``ConsumerContract`` and provides a
``consumer_harness`` fixture (a ``ConsumerHarness``): the in-memory store and
bus, or PostgreSQL and a real Kafka broker. The effect each test handler
applies is real (a row, or an appended event) and is counted, never inferred
from the runner's own counters alone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID, uuid4

from eventkit.consumer import (
    ConsumerRunner,
    ConsumerSettings,
    Handled,
    HandledHook,
    Handler,
    Outcome,
    PermanentError,
)
from eventkit.envelope import Envelope, KafkaRecord, encode_data, parse_time
from eventkit.kafka_client import ReceivedMessage
from eventkit.store import EventStore, Transaction

THING_HAPPENED = "guestlist.contract.ThingHappened.v1"

# Retries fast enough for a test, still more than one attempt.
FAST = ConsumerSettings(
    retry_attempts=3, retry_base_delay=0.01, retry_max_delay=0.05, commit_interval=0.2
)


class ConsumerHarness(Protocol):
    store: EventStore
    topic: str
    timeout: float

    def runner(
        self,
        group: str,
        handler: Handler,
        *,
        settings: ConsumerSettings = FAST,
        on_handled: HandledHook | None = None,
    ) -> ConsumerRunner: ...

    async def publish(self, records: Sequence[KafkaRecord]) -> None: ...

    async def apply_effect(self, envelope: Envelope, tx: Transaction) -> None:
        """Write one effect of ``envelope`` through ``tx``."""
        ...

    async def count_effects(self, event_id: UUID) -> int: ...

    async def dead_letters(self, group: str, count: int) -> list[ReceivedMessage]:
        """The group's DLQ once it holds ``count`` messages (or what it holds at the timeout)."""
        ...

    async def rebalance(self, group: str, handler: Handler, on_handled: HandledHook) -> None:
        """Make the group's partitions move: revoked from the running member, then back."""
        ...


def new_group() -> str:
    return f"contract-{uuid4().hex[:10]}"


def thing(subject: str, sequence: int) -> Envelope:
    return Envelope(
        id=uuid4(),
        type=THING_HAPPENED,
        subject=subject,
        time=datetime.now(UTC),
        actor_id="system",
        sequence=sequence,
        data_json=encode_data({"n": sequence}),
    )


@dataclass
class Tally:
    """Counts what the runners report as handled, to wait on it."""

    seen: list[Handled] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, handled: Handled) -> None:
        self.seen.append(handled)
        self.changed.set()

    def outcomes(self) -> Counter[Outcome]:
        return Counter(h.outcome for h in self.seen)

    async def reach(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running(runner: ConsumerRunner, timeout: float = 30.0) -> AsyncIterator[ConsumerRunner]:
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    try:
        yield runner
    finally:
        stopping.set()
        async with asyncio.timeout(timeout):
            await task


async def caught_up(runner: ConsumerRunner) -> bool:
    """Every assigned partition's end is known and processed."""
    lags = await runner.partition_lags()
    return bool(lags) and all(lag == 0 for lag in lags.values())


class ConsumerContract:
    async def test_given_a_redelivered_event_when_consumed_then_its_effect_is_applied_once(
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        once, other = thing("a", 1), thing("b", 1)
        await h.publish([once.to_kafka(h.topic), once.to_kafka(h.topic), other.to_kafka(h.topic)])
        async with running(h.runner(group, h.apply_effect, on_handled=tally)) as runner:
            await tally.reach(3, h.timeout)
        assert await h.count_effects(once.id) == 1
        assert await h.count_effects(other.id) == 1
        assert (runner.processed, runner.skipped) == (2, 1)

        # The relay republishing after a restart of the consumer: still one effect.
        await h.publish([once.to_kafka(h.topic)])
        async with running(h.runner(group, h.apply_effect, on_handled=tally)) as restarted:
            await tally.reach(4, h.timeout)
        assert tally.seen[-1].outcome is Outcome.SKIPPED
        assert (restarted.processed, restarted.skipped) == (0, 1)
        assert await h.count_effects(once.id) == 1

    async def test_given_a_handler_that_always_fails_then_the_event_is_dead_lettered_and_the_next_processed(  # noqa: E501
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        bad, good = thing("same-key", 1), thing("same-key", 2)
        attempts = Counter[UUID]()

        async def handler(envelope: Envelope, tx: Transaction) -> None:
            attempts[envelope.id] += 1
            await h.apply_effect(envelope, tx)
            if envelope.id == bad.id:
                raise RuntimeError(f"cannot apply {envelope.id}")

        await h.publish([bad.to_kafka(h.topic), good.to_kafka(h.topic)])
        async with running(h.runner(group, handler, on_handled=tally)):
            await tally.reach(2, h.timeout)
        assert [x.outcome for x in tally.seen] == [Outcome.DEAD_LETTERED, Outcome.APPLIED]
        assert attempts[bad.id] == FAST.retry_attempts
        assert await h.count_effects(bad.id) == 0
        assert await h.count_effects(good.id) == 1
        assert not await h.store.is_processed(group, bad.id)
        assert await h.store.is_processed(group, good.id)

        [letter] = await h.dead_letters(group, 1)
        original = tally.seen[0].message
        headers = dict(letter.headers)
        assert letter.key == original.key == b"same-key"
        assert letter.value == original.value
        assert set(original.headers) <= set(letter.headers)
        assert headers["ce_id"] == str(bad.id).encode()
        assert headers["dlq_error"].decode() == f"RuntimeError: cannot apply {bad.id}"
        assert headers["dlq_topic"].decode() == h.topic
        assert headers["dlq_partition"].decode() == str(original.partition)
        assert headers["dlq_offset"].decode() == str(original.offset)
        assert headers["dlq_attempts"].decode() == str(FAST.retry_attempts)
        assert parse_time(headers["dlq_failed_at"].decode()) <= datetime.now(UTC)

    async def test_given_a_permanent_error_then_no_retry_and_straight_to_the_dlq(
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        event, calls = thing("k", 1), []

        async def handler(envelope: Envelope, tx: Transaction) -> None:
            calls.append(envelope.id)
            raise PermanentError("unknown reference")

        await h.publish([event.to_kafka(h.topic)])
        async with running(h.runner(group, handler, on_handled=tally)):
            await tally.reach(1, h.timeout)
        assert calls == [event.id]
        [letter] = await h.dead_letters(group, 1)
        assert dict(letter.headers)["dlq_attempts"] == b"1"
        assert dict(letter.headers)["dlq_error"] == b"PermanentError: unknown reference"

    async def test_given_a_message_that_is_not_an_event_then_it_is_dead_lettered_and_the_next_processed(  # noqa: E501
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        junk = KafkaRecord(h.topic, b"k", b"not json", [("origin", b"elsewhere")])
        good = thing("k", 1)
        await h.publish([junk, good.to_kafka(h.topic)])
        async with running(h.runner(group, h.apply_effect, on_handled=tally)):
            await tally.reach(2, h.timeout)
        assert await h.count_effects(good.id) == 1
        [letter] = await h.dead_letters(group, 1)
        assert letter.value == b"not json"
        assert ("origin", b"elsewhere") in letter.headers
        assert dict(letter.headers)["dlq_error"].startswith(b"EnvelopeError: ")

    async def test_given_interleaved_keys_then_each_key_is_handled_in_order(
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        keys, per_key = ["k1", "k2", "k3", "k4"], 25
        events = [thing(key, n) for n in range(1, per_key + 1) for key in keys]
        seen: dict[str, list[int]] = {key: [] for key in keys}

        async def handler(envelope: Envelope, tx: Transaction) -> None:
            await h.apply_effect(envelope, tx)
            seen[envelope.subject].append(envelope.sequence)

        await h.publish([e.to_kafka(h.topic) for e in events])
        async with running(h.runner(group, handler, on_handled=tally)):
            await tally.reach(len(events), h.timeout)
        assert seen == {key: list(range(1, per_key + 1)) for key in keys}
        assert [await h.count_effects(e.id) for e in events] == [1] * len(events)

    async def test_given_a_handler_that_fails_after_writing_then_effect_and_mark_roll_back_together(
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        event, attempts = thing("k", 1), Counter[UUID]()

        async def handler(envelope: Envelope, tx: Transaction) -> None:
            attempts[envelope.id] += 1
            await h.apply_effect(envelope, tx)
            if attempts[envelope.id] < FAST.retry_attempts:
                raise ConnectionError("lost the connection after writing")

        await h.publish([event.to_kafka(h.topic)])
        async with running(h.runner(group, handler, on_handled=tally)) as runner:
            await tally.reach(1, h.timeout)
        assert attempts[event.id] == FAST.retry_attempts
        # Each failed attempt wrote an effect too: only the committed one remains.
        assert await h.count_effects(event.id) == 1
        assert await h.store.is_processed(group, event.id)
        assert (runner.processed, runner.dead_lettered) == (1, 0)

    async def test_given_a_graceful_stop_when_restarted_then_nothing_is_delivered_again(
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        # Offsets reach Kafka only at shutdown: no batch or timer commit in between.
        lazy = ConsumerSettings(commit_every=10_000, commit_interval=3_600)
        events = [thing(f"k{n}", 1) for n in range(12)]
        await h.publish([e.to_kafka(h.topic) for e in events])
        async with running(h.runner(group, h.apply_effect, settings=lazy, on_handled=tally)):
            await tally.reach(len(events), h.timeout)

        later = thing("k0", 2)
        await h.publish([later.to_kafka(h.topic)])
        async with running(
            h.runner(group, h.apply_effect, settings=lazy, on_handled=tally)
        ) as restarted:
            await tally.reach(len(events) + 1, h.timeout)
            await eventually(lambda: caught_up(restarted), h.timeout)
        assert (restarted.processed, restarted.skipped) == (1, 0)
        assert [await h.count_effects(e.id) for e in [*events, later]] == [1] * 13

    async def test_given_a_rebalance_then_offsets_are_committed_before_partitions_move(
        self, consumer_harness: ConsumerHarness
    ) -> None:
        h, group, tally = consumer_harness, new_group(), Tally()
        lazy = ConsumerSettings(commit_every=10_000, commit_interval=3_600)
        first = [thing(f"k{n}", 1) for n in range(9)]
        await h.publish([e.to_kafka(h.topic) for e in first])
        async with running(h.runner(group, h.apply_effect, settings=lazy, on_handled=tally)):
            await tally.reach(len(first), h.timeout)
            await h.rebalance(group, h.apply_effect, tally)
            second = [thing(f"k{n}", 2) for n in range(9)]
            await h.publish([e.to_kafka(h.topic) for e in second])
            await tally.reach(len(first) + len(second), h.timeout)
        assert tally.outcomes()[Outcome.SKIPPED] == 0
        assert [await h.count_effects(e.id) for e in [*first, *second]] == [1] * 18
