"""What every event store and outbox adapter promises, written once.

A test module subclasses ``EventStoreContract`` and provides three fixtures:
``store`` (an EventStore that is also its Outbox), ``publisher`` (where the
relay sends) and ``published`` (an async function ``(topic, count)`` returning
the envelopes that reached that topic, in partition order), and ``topic``
(a topic name of the test's own). The in-memory
adapters and the PostgreSQL + Kafka adapters run the same assertions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import uuid4

import pytest

from eventkit.envelope import Envelope, EventType
from eventkit.publisher import Publisher
from eventkit.relay import OutboxRelay
from eventkit.store import ConcurrencyError, NewEvent, OutgoingEvent, RecordedEvent

Published = Callable[[str, int], Awaitable[list[Envelope]]]

TOPIC = "contract.things"
THING_ADDED = EventType("contract", "ThingAdded", 1)


def thing(n: int, topic: str = TOPIC) -> NewEvent:
    return NewEvent.from_data(THING_ADDED, topic, {"n": n})


def stream() -> str:
    return f"thing-{uuid4().hex[:12]}"


async def everything_pending(store: Any) -> list[Envelope]:
    async with store.leadership():
        return [e.envelope for e in await store.pending(10_000)]


def numbers(events: Sequence[RecordedEvent | OutgoingEvent | Envelope]) -> list[int]:
    envelopes = [e if isinstance(e, Envelope) else e.envelope for e in events]
    return [int(e.data["n"]) for e in envelopes]


class EventStoreContract:
    async def test_given_a_new_stream_when_appending_then_versions_start_at_one(
        self, store: Any
    ) -> None:
        stream_id = stream()
        recorded = await store.append(stream_id, 0, [thing(1), thing(2)], actor_id="alice")
        assert [e.version for e in recorded] == [1, 2]
        read = await store.read_stream(stream_id)
        assert numbers(read) == [1, 2]
        assert read[0].envelope.actor_id == "alice"
        assert read[0].envelope.type == "guestlist.contract.ThingAdded.v1"
        assert read[0].envelope.source == "/guestlist/contract"
        assert read[0].envelope.subject == stream_id

    async def test_given_a_stale_version_when_appending_then_refused_and_nothing_written(
        self, store: Any
    ) -> None:
        stream_id = stream()
        await store.append(stream_id, 0, [thing(1)], actor_id="a")
        with pytest.raises(ConcurrencyError):
            await store.append(stream_id, 0, [thing(99)], actor_id="a")
        with pytest.raises(ConcurrencyError):
            await store.append(stream_id, 5, [thing(99)], actor_id="a")
        assert numbers(await store.read_stream(stream_id)) == [1]
        assert 99 not in numbers(await everything_pending(store))

    async def test_given_racing_writers_when_both_append_the_same_version_then_one_wins(
        self, store: Any
    ) -> None:
        stream_id = stream()
        await store.append(stream_id, 0, [thing(0)], actor_id="a")
        results = await asyncio.gather(
            *(store.append(stream_id, 1, [thing(n)], actor_id="a") for n in (1, 2, 3)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, Exception) for r in results) == 1
        assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, Exception))
        assert [e.version for e in await store.read_stream(stream_id)] == [1, 2]

    async def test_given_any_version_when_writers_race_then_all_land_without_gaps(
        self, store: Any
    ) -> None:
        stream_id = stream()
        await asyncio.gather(
            *(store.append(stream_id, None, [thing(n)], actor_id="a") for n in range(8))
        )
        read = await store.read_stream(stream_id)
        assert [e.version for e in read] == list(range(1, 9))
        assert sorted(numbers(read)) == list(range(8))

    async def test_given_a_log_stream_when_open_transactions_append_then_each_takes_the_next(
        self, store: Any
    ) -> None:
        stream_id = stream()

        async def read_and_log(n: int) -> list[RecordedEvent]:
            async with store.transaction() as tx:
                recorded: list[RecordedEvent] = await tx.append_to_log(
                    stream_id, [thing(n)], actor_id="reader")
                await asyncio.sleep(0.01)  # the rest of the read, before it commits
                return recorded

        results = await asyncio.gather(
            *(read_and_log(n) for n in range(30)),
            *(store.append_to_log(stream_id, [thing(n)], actor_id="reader")
              for n in range(30, 40)),
        )
        read = await store.read_stream(stream_id)
        assert sorted(r[0].version for r in results) == list(range(1, 41))
        assert [e.version for e in read] == list(range(1, 41))
        assert sorted(numbers(read)) == list(range(40))
        logged = [e for e in await everything_pending(store) if e.subject == stream_id]
        assert sorted(numbers(logged)) == list(range(40))

    async def test_read_stream_after_a_version(self, store: Any) -> None:
        stream_id = stream()
        await store.append(stream_id, 0, [thing(n) for n in range(5)], actor_id="a")
        assert numbers(await store.read_stream(stream_id, after_version=3)) == [3, 4]

    async def test_read_all_orders_by_a_global_position(self, store: Any) -> None:
        first, second = stream(), stream()
        a = await store.append(first, 0, [thing(1)], actor_id="a")
        b = await store.append(second, 0, [thing(2)], actor_id="a")
        assert b[0].position > a[0].position
        after = await store.read_all(after_position=a[0].position - 1, limit=10)
        assert [e.envelope.id for e in after][:2] == [a[0].envelope.id, b[0].envelope.id]

    async def test_given_a_failing_transaction_then_events_outbox_and_marks_roll_back(
        self, store: Any
    ) -> None:
        stream_id = stream()
        processed_id = uuid4()
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.append(stream_id, 0, [thing(1)], actor_id="a")
                assert await tx.record_processed("contract-consumer", processed_id)
                raise RuntimeError("handler failed after writing")
        assert await store.read_stream(stream_id) == []
        assert all(e.subject != stream_id for e in await everything_pending(store))
        assert not await store.is_processed("contract-consumer", processed_id)

    async def test_record_processed_is_true_once_per_consumer(self, store: Any) -> None:
        event_id = uuid4()
        async with store.transaction() as tx:
            assert await tx.record_processed("one", event_id)
        async with store.transaction() as tx:
            assert not await tx.record_processed("one", event_id)
            assert await tx.record_processed("two", event_id)
        assert await store.is_processed("one", event_id)

    async def test_record_processed_many_returns_only_the_new_ids_once(self, store: Any) -> None:
        seen, fresh = uuid4(), uuid4()
        async with store.transaction() as tx:
            assert await tx.record_processed("many", seen)
        async with store.transaction() as tx:
            assert await tx.record_processed_many("many", [seen, fresh, fresh]) == {fresh}
        async with store.transaction() as tx:
            assert await tx.record_processed_many("many", [seen, fresh]) == set()
        assert await store.is_processed("many", fresh)

    async def test_processed_among_names_only_what_this_consumer_processed(
        self, store: Any
    ) -> None:
        mine, theirs, nobodys = uuid4(), uuid4(), uuid4()
        async with store.transaction() as tx:
            await tx.record_processed_many("among", [mine])
            await tx.record_processed("other", theirs)
        assert await store.processed_among("among", [mine, theirs, nobodys]) == {mine}
        assert await store.processed_among("among", []) == set()

    async def test_outbox_holds_committed_events_in_append_order_until_marked(
        self, store: Any
    ) -> None:
        stream_id = stream()
        await store.append(stream_id, 0, [thing(1), thing(2)], actor_id="a")
        await store.append(stream_id, 2, [thing(3)], actor_id="a")
        async with store.leadership():
            mine = [e for e in await store.pending(10_000) if e.envelope.subject == stream_id]
            assert numbers(mine) == [1, 2, 3]
            await store.mark_published([e.position for e in mine[:2]])
            left = [e for e in await store.pending(10_000) if e.envelope.subject == stream_id]
        assert numbers(left) == [3]

    async def test_relay_publishes_every_event_in_stream_order_with_its_envelope(
        self, store: Any, publisher: Publisher, published: Published, topic: str
    ) -> None:
        streams = [stream() for _ in range(4)]
        for round_ in range(3):
            for stream_id in streams:
                await store.append(
                    stream_id, None, [thing(round_ * 10 + i, topic) for i in range(3)],
                    actor_id="bob", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                )
        relay = OutboxRelay(store, publisher, batch_size=5)
        async with store.leadership():
            while await relay.publish_once():
                pass
            assert await store.pending(10) == []
        envelopes = await published(topic, 36)
        assert len({e.id for e in envelopes}) == 36
        for stream_id in streams:
            mine = [e for e in envelopes if e.subject == stream_id]
            assert [e.sequence for e in mine] == list(range(1, 10))
            assert numbers(mine) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
        assert envelopes[0].actor_id == "bob"
        assert envelopes[0].traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"

    async def test_outbox_records_are_the_envelopes_the_store_recorded(self, store: Any) -> None:
        stream_id = stream()
        recorded = await store.append(
            stream_id, 0, [thing(1), thing(2)], actor_id="carol",
            traceparent="00-" + "c" * 32 + "-" + "d" * 16 + "-01",
        )
        stored = await store.read_stream(stream_id)
        async with store.leadership():
            outgoing = [e for e in await store.pending(10_000) if e.envelope.subject == stream_id]
        assert [e.record for e in outgoing] == [e.envelope.to_kafka(e.topic) for e in stored]
        assert [e.position for e in outgoing] == [e.position for e in recorded]
