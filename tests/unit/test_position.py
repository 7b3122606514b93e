"""Position tokens: opaque, round-trip to the event, refuse what we never issued."""

from __future__ import annotations

import asyncio

import pytest

from eventkit.position import InvalidPosition, event_id_of, position_of, wait_for_position
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
