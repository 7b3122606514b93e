"""The consumer contract on the in-memory store and bus, plus lag, readiness and redrive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from uuid import UUID

import pytest
from prometheus_client import CollectorRegistry

from eventkit.consumer import ConsumerRunner, ConsumerSettings, HandledHook, Handler
from eventkit.consumer_health import ConsumerMetrics
from eventkit.dlq import DeadLetter, dead_letter, dead_letter_topic, redrive, redrive_group
from eventkit.envelope import Envelope, EventType
from eventkit.kafka_client import ReceivedMessage
from eventkit.store import NewEvent, Transaction
from eventkit.testing.consumer_contract import (
    FAST,
    ConsumerContract,
    Tally,
    eventually,
    new_group,
    running,
    thing,
)
from eventkit.testing.memory import InMemoryBus, InMemoryEventStore, InMemoryTransaction

TOPIC = "contract.things"
EFFECT_APPLIED = EventType("contract", "EffectApplied", 1)


class MemoryHarness:
    timeout = 5.0

    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.bus = InMemoryBus()
        self.topic = TOPIC
        self.metrics = ConsumerMetrics(CollectorRegistry())

    def runner(
        self,
        group: str,
        handler: Handler,
        *,
        settings: ConsumerSettings = FAST,
        on_handled: HandledHook | None = None,
    ) -> ConsumerRunner:
        return ConsumerRunner(
            group=group,
            client=self.bus.consumer(group, topics=[self.topic]),
            store=self.store,
            handler=handler,
            dead_letters=self.bus,
            settings=settings,
            metrics=self.metrics,
            on_handled=on_handled,
        )

    async def publish(self, records: list[object]) -> None:
        await self.bus.publish(records)  # type: ignore[arg-type]

    async def apply_effect(self, envelope: Envelope, tx: Transaction) -> None:
        # An appended event is transactional in the fake store, like a row in PostgreSQL.
        effect = NewEvent.from_data(EFFECT_APPLIED, "contract.effects", {"of": str(envelope.id)})
        await tx.append(f"effect-{envelope.id}", None, [effect], actor_id="system")

    async def count_effects(self, event_id: UUID) -> int:
        return len(await self.store.read_stream(f"effect-{event_id}"))

    async def dead_letters(self, group: str, count: int) -> list[ReceivedMessage]:
        topic = dead_letter_topic(group)

        async def enough() -> bool:
            return len(self.bus.received(topic)) >= count

        await eventually(enough, self.timeout)
        return self.bus.received(topic)

    async def rebalance(self, group: str, handler: Handler, on_handled: HandledHook) -> None:
        await self.bus.rebalance(group)


@pytest.fixture
def consumer_harness() -> MemoryHarness:
    return MemoryHarness()


class TestConsumerInMemory(ConsumerContract):
    pass


async def test_given_a_backlog_then_lag_is_exported_and_readiness_follows_it() -> None:
    h, group = MemoryHarness(), new_group()
    registry = CollectorRegistry()
    h.metrics = ConsumerMetrics(registry)
    release, entered = asyncio.Event(), asyncio.Event()

    async def slow(envelope: Envelope, tx: Transaction) -> None:
        entered.set()
        await release.wait()
        await h.apply_effect(envelope, tx)

    events = [thing("one-key", n) for n in range(1, 11)]
    await h.publish([e.to_kafka(h.topic) for e in events])
    runner = h.runner(group, slow)
    check = runner.readiness_check(max_lag=5)
    assert (await check()).ok is False  # not started
    async with running(runner):
        await asyncio.wait_for(entered.wait(), h.timeout)
        assert await runner.lag() == 10  # the one in hand is not done yet
        [partition] = [p for p, lag in (await runner.partition_lags()).items() if lag]
        labels = {"group": group, "topic": h.topic, "partition": str(partition.partition)}
        assert registry.get_sample_value("eventkit_consumer_lag", labels) == 10
        result = await check()
        assert (result.name, result.ok, result.detail) == (
            f"consumer {group}", False, "lag 10 (max 5)"
        )
        release.set()

        async def drained() -> bool:
            return await runner.lag() == 0

        await eventually(drained, h.timeout)
        assert (await check()).ok is True
        assert registry.get_sample_value("eventkit_consumer_lag", labels) == 0
        processed = registry.get_sample_value("eventkit_consumer_processed_total", {"group": group})
        assert processed == 10


async def test_given_a_dead_letter_when_redriven_then_the_fixed_consumer_applies_it_once() -> None:
    h, group, tally = MemoryHarness(), new_group(), Tally()
    broken = True

    async def handler(envelope: Envelope, tx: Transaction) -> None:
        await h.apply_effect(envelope, tx)
        if broken:
            raise RuntimeError("dependency down")

    event = thing("k", 1)
    await h.publish([event.to_kafka(h.topic)])
    async with running(h.runner(group, handler, on_handled=tally)) as runner:
        await tally.reach(1, h.timeout)
        assert runner.dead_lettered == 1
        broken = False

        def redrive_client() -> object:
            return h.bus.consumer(redrive_group(group), topics=[dead_letter_topic(group)])

        result = await redrive(redrive_client(), h.bus, timeout=h.timeout)  # type: ignore[arg-type]
        assert (result.redriven, result.not_events) == (1, 0)
        await tally.reach(2, h.timeout)
        # Progress is committed: a second redrive sends nothing.
        again = await redrive(redrive_client(), h.bus, timeout=h.timeout)  # type: ignore[arg-type]
        assert again.redriven == 0
    assert await h.count_effects(event.id) == 1
    [original, redriven] = h.bus.received(h.topic)
    assert (redriven.key, redriven.value, redriven.headers) == (
        original.key, original.value, original.headers
    )


class FlakyStore(InMemoryEventStore):
    """A store that cannot open a transaction for its first ``outage`` tries."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = outage

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InMemoryTransaction]:
        if self.outage > 0:
            self.outage -= 1
            raise ConnectionError("database unavailable")
        async with super().transaction() as tx:
            yield tx


async def test_given_the_store_is_down_then_the_consumer_waits_instead_of_dead_lettering() -> None:
    h, group, tally = MemoryHarness(), new_group(), Tally()
    h.store = FlakyStore(outage=FAST.retry_attempts * 3)
    event = thing("k", 1)
    await h.publish([event.to_kafka(h.topic)])
    async with running(h.runner(group, h.apply_effect, on_handled=tally)) as runner:
        await tally.reach(1, h.timeout)
    assert h.store.outage == 0
    assert (runner.processed, runner.dead_lettered) == (1, 0)
    assert await h.count_effects(event.id) == 1


def test_given_a_message_dead_lettered_twice_then_its_dlq_headers_are_replaced() -> None:
    event = thing("k", 1)
    record = event.to_kafka("t")
    message = ReceivedMessage("t", 2, 7, record.key, record.value, tuple(record.headers))
    first = dead_letter(
        message, group="g", error=ValueError("x" * 5000), attempts=5, at=datetime.now(UTC)
    )
    again = ReceivedMessage("t", 2, 9, first.key, first.value, first.headers)
    second = dead_letter(again, group="g", error=KeyError("k"), attempts=1, at=datetime.now(UTC))
    names = [name for name, _ in second.headers]
    assert names.count("dlq_error") == 1
    assert len(dict(first.headers)["dlq_error"].decode()) == 2000
    letter = DeadLetter.from_message(
        ReceivedMessage("g.dlq", 0, 3, second.key, second.value, second.headers)
    )
    assert (letter.group, letter.topic, letter.partition, letter.offset) == ("g", "t", 2, 9)
    assert letter.event_id == str(event.id) and letter.attempts == 1
    assert letter.error == "KeyError: 'k'"
    assert letter.headers == tuple(record.headers)
    assert letter.original().partition == 2
