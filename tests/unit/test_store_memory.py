"""The store contract against the in-memory adapters."""

from __future__ import annotations

import pytest

from eventkit.envelope import Envelope
from eventkit.testing.memory import InMemoryBus, InMemoryEventStore
from eventkit.testing.store_contract import EventStoreContract, Published


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def publisher() -> InMemoryBus:
    return InMemoryBus()


@pytest.fixture
def topic() -> str:
    return "contract.things"


@pytest.fixture
def published(publisher: InMemoryBus) -> Published:
    async def read(topic: str, count: int) -> list[Envelope]:
        return [Envelope.from_record(r) for r in publisher.records(topic)][:count]

    return read


class TestInMemoryEventStore(EventStoreContract):
    pass
