"""A service's runtime end to end: command -> outbox -> relay -> Kafka -> consumer -> effect,
with read-your-writes by position and the consumer's lag in /readyz."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from eventkit.envelope import Envelope, EventType
from eventkit.http.app import create_service_app
from eventkit.position import position_of, wait_for_position
from eventkit.runtime import ServiceRuntime, Subscription
from eventkit.store import NewEvent, Transaction
from services.projections.settings import ProjectionsSettings

SEEN = EventType("projections", "ThingSeen", 1)


async def test_an_appended_event_comes_back_through_kafka_and_is_applied_once(
    database_url: str, kafka_bootstrap: str, kafka_topics  # type: ignore[no-untyped-def]
) -> None:
    topic = await kafka_topics("things")
    applied: list[str] = []

    async def count(envelope: Envelope, tx: Transaction) -> None:
        await tx.connection.execute(  # type: ignore[attr-defined]
            "INSERT INTO seen_things (event_id) VALUES ($1)", envelope.id
        )
        applied.append(envelope.subject)

    settings = ProjectionsSettings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    runtime = ServiceRuntime(
        settings, subscriptions=[Subscription(group="things-board", handler=count, topics=[topic])]
    )
    app = create_service_app(
        settings, readiness_checks=runtime.readiness_checks(), lifespan=runtime.lifespan,
        registry=runtime.registry,
    )
    async with LifespanManager(app, startup_timeout=60) as manager:
        await runtime.store.pool.execute("CREATE TABLE seen_things (event_id uuid)")
        recorded = []
        for n in range(5):
            recorded += await runtime.store.append(
                f"thing-{n}", 0, [NewEvent.from_data(SEEN, topic, {"n": n})], actor_id="t"
            )
        # Read-your-writes: the last command's position is reached once it was applied.
        assert await wait_for_position(
            runtime.store, "things-board", position_of(recorded[-1]), within=60
        )
        for event in recorded:
            assert await wait_for_position(
                runtime.store, "things-board", position_of(event), within=10
            )
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            ready = (await client.get("/readyz")).json()
            metrics = (await client.get("/metrics")).text
        rows = await runtime.store.pool.fetchval("SELECT count(*) FROM seen_things")

    assert rows == 5
    assert sorted(applied) == [f"thing-{n}" for n in range(5)]
    checks = {check["name"]: check for check in ready["checks"]}
    assert checks["consumer things-board"]["ok"], checks
    assert 'eventkit_consumer_lag{group="things-board"' in metrics
    assert "eventkit_outbox_backlog 0.0" in metrics
