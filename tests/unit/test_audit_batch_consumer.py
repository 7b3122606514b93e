"""The batch handler the audit log ingests with: the whole consumer contract holds through it,
and a polled batch reaches it as one call."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from uuid import UUID

import pytest

from eventkit.consumer import ConsumerRunner, ConsumerSettings, Delivery, HandledHook, Handler
from eventkit.envelope import Envelope
from eventkit.inbox import Outcome
from eventkit.store import Transaction
from eventkit.testing.consumer_contract import (
    FAST,
    ConsumerContract,
    ConsumerHarness,
    Tally,
    eventually,
    new_group,
    running,
    thing,
)
from tests.unit.test_consumer_memory import MemoryHarness


class BatchHarness(MemoryHarness):
    """Every contract handler is run through a batch handler, one call per polled batch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def runner(
        self,
        group: str,
        handler: Handler,
        *,
        settings: ConsumerSettings = FAST,
        on_handled: HandledHook | None = None,
    ) -> ConsumerRunner:
        async def in_batches(deliveries: Sequence[Delivery], tx: Transaction) -> None:
            self.calls.append(len(deliveries))
            for delivery in deliveries:
                await handler(delivery.envelope, tx)

        return ConsumerRunner(
            group=group,
            client=self.bus.consumer(group, topics=[self.topic]),
            store=self.store,
            batch_handler=in_batches,
            dead_letters=self.bus,
            settings=settings,
            metrics=self.metrics,
            on_handled=on_handled,
        )


@pytest.fixture
def consumer_harness() -> BatchHarness:
    return BatchHarness()


class TestConsumerWithBatchHandler(ConsumerContract):
    async def test_given_a_handler_that_always_fails_then_the_event_is_dead_lettered_and_the_next_processed(  # noqa: E501
        self, consumer_harness: ConsumerHarness
    ) -> None:
        # A failed batch call names no event, so it uses up no event's attempts:
        # the bad event is tried once in its batch, then retry_attempts times alone.
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
        assert attempts[bad.id] == FAST.retry_attempts + 1
        assert await h.count_effects(bad.id) == 0
        assert await h.count_effects(good.id) == 1
        assert not await h.store.is_processed(group, bad.id)
        [letter] = await h.dead_letters(group, 1)
        assert dict(letter.headers)["dlq_attempts"].decode() == str(FAST.retry_attempts)


async def test_given_a_backlog_when_consumed_then_the_batch_handler_gets_it_in_few_calls() -> None:
    h, group = BatchHarness(), new_group()
    events = [thing("one-key", n) for n in range(1, 101)]
    await h.publish([e.to_kafka(h.topic) for e in events])
    seen: list[Delivery] = []

    async def keep(envelope: object, tx: Transaction) -> None:
        seen.append(envelope)  # type: ignore[arg-type]

    runner = h.runner(group, keep)  # type: ignore[arg-type]
    async with running(runner):

        async def all_seen() -> bool:
            return len(seen) == 100

        await eventually(all_seen, h.timeout)
    assert sum(h.calls) == 100
    assert len(h.calls) < 10  # batches, not one call per event
    assert [e.id for e in seen] == [e.id for e in events]  # type: ignore[attr-defined]


def test_a_runner_needs_exactly_one_kind_of_handler() -> None:
    h = MemoryHarness()
    with pytest.raises(ValueError, match="handler"):
        ConsumerRunner(group="g", client=h.bus.consumer("g", topics=[h.topic]),
                       store=h.store, dead_letters=h.bus)
