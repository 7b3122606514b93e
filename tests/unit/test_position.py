"""Position tokens: opaque, round-trip to the event, refuse what we never issued."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

import pytest

from eventkit.position import (
    InvalidPosition,
    PositionWaits,
    event_id_of,
    position_of,
    wait_for_position,
)
from eventkit.testing.memory import InMemoryEventStore
from eventkit.testing.store_contract import stream, thing


async def test_a_position_names_the_commands_last_event() -> None:
    store = InMemoryEventStore()
    recorded = await store.append(stream(), 0, [thing(1), thing(2)], actor_id="a")
    token = position_of(recorded[-1])
    assert event_id_of(token) == recorded[-1].envelope.id
    assert str(recorded[-1].envelope.id) not in token  # opaque to callers


@pytest.mark.parametrize("token", ["", "p1.", "p1.!!!", "p2.AAAA", "p1.AAAA", "12345"])
def test_tokens_we_never_issued_are_refused(token: str) -> None:
    with pytest.raises(InvalidPosition):
        event_id_of(token)


async def test_waiting_ends_when_the_read_model_processed_the_event() -> None:
    store = InMemoryEventStore()
    [event] = await store.append(stream(), 0, [thing(1)], actor_id="a")
    token = position_of(event)
    assert not await wait_for_position(store, "directory", token, within=0.05)

    async def process_later() -> None:
        await asyncio.sleep(0.1)
        async with store.transaction() as tx:
            await tx.record_processed("directory", event.envelope.id)

    task = asyncio.create_task(process_later())
    assert await wait_for_position(store, "directory", token, within=5)
    await task


class CountingStore(InMemoryEventStore):
    """The in-memory store, counting the questions waiting reads put to it."""

    def __init__(self) -> None:
        super().__init__()
        self.questions = 0
        self.broken = False

    async def processed_among(self, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
        self.questions += 1
        if self.broken:
            raise ConnectionError("the database went away")
        return await super().processed_among(consumer, event_ids)


async def _processed(store: InMemoryEventStore, consumer: str, *event_ids: UUID) -> None:
    async with store.transaction() as tx:
        await tx.record_processed_many(consumer, list(event_ids))


async def test_a_change_wakes_exactly_the_reads_whose_event_was_processed() -> None:
    store = CountingStore()
    events = await store.append(stream(), 0, [thing(n) for n in range(3)], actor_id="a")
    waits = PositionWaits(lambda: store, poll=60)  # only changed() can wake them within the test
    reads = [asyncio.create_task(waits.wait("board", position_of(e), within=1)) for e in events]
    other = asyncio.create_task(waits.wait("directory", position_of(events[0]), within=1))
    await asyncio.sleep(0.05)
    await _processed(store, "board", events[0].envelope.id, events[2].envelope.id)
    waits.changed()
    assert await asyncio.gather(*reads, other) == [True, False, True, False]


async def test_reads_waiting_together_are_answered_by_one_question() -> None:
    store = CountingStore()
    events = await store.append(stream(), 0, [thing(n) for n in range(100)], actor_id="a")
    await _processed(store, "board", *(e.envelope.id for e in events))
    waits = PositionWaits(lambda: store, poll=60)
    answers = await asyncio.gather(
        *(waits.wait("board", position_of(e), within=5) for e in events))
    assert all(answers)
    assert store.questions == 1


async def test_without_a_change_the_poll_still_finds_the_event() -> None:
    store = CountingStore()
    [event] = await store.append(stream(), 0, [thing(1)], actor_id="a")
    waits = PositionWaits(lambda: store, poll=0.05)
    read = asyncio.create_task(waits.wait("board", position_of(event), within=5))
    await asyncio.sleep(0.1)
    await _processed(store, "board", event.envelope.id)  # no changed(): a missed notification
    assert await read


async def test_a_failing_store_fails_the_waiting_reads_and_the_next_read_starts_afresh() -> None:
    store = CountingStore()
    [event] = await store.append(stream(), 0, [thing(1)], actor_id="a")
    waits = PositionWaits(lambda: store, poll=60)
    store.broken = True
    with pytest.raises(ConnectionError):
        await waits.wait("board", position_of(event), within=5)
    store.broken = False
    await _processed(store, "board", event.envelope.id)
    assert await waits.wait("board", position_of(event), within=5)


async def test_a_change_named_for_one_consumer_asks_only_about_its_reads() -> None:
    store = CountingStore()
    [event] = await store.append(stream(), 0, [thing(1)], actor_id="a")
    waits = PositionWaits(lambda: store, poll=60)
    board = asyncio.create_task(waits.wait("board", position_of(event), within=5))
    directory = asyncio.create_task(waits.wait("directory", position_of(event), within=0.5))
    await asyncio.sleep(0.05)
    assert store.questions == 2  # the first look asked about both
    await _processed(store, "board", event.envelope.id)
    waits.changed("directory")
    await asyncio.sleep(0.05)
    assert store.questions == 3 and not board.done()  # the board's read was not asked about
    waits.changed("security")  # nobody waits on it: no question at all
    await asyncio.sleep(0.05)
    assert store.questions == 3
    waits.changed("board")
    assert await board
    assert not await directory
