"""One trace from an HTTP request, through the outbox and the relay, to the Kafka message."""

from __future__ import annotations

import asyncio

import httpx
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Request
from opentelemetry import trace

from eventkit.envelope import EventType
from eventkit.http.app import create_service_app
from eventkit.runtime import ServiceRuntime
from eventkit.store import NewEvent
from eventkit.testing.kafka import read_topic
from services.audit.settings import AuditSettings

NOTED = EventType("audit", "Noted", 1)


async def test_the_request_trace_reaches_kafka_in_the_traceparent_header(
    database_url: str, kafka_bootstrap: str, kafka_topics  # type: ignore[no-untyped-def]
) -> None:
    topic = await kafka_topics("traced")
    settings = AuditSettings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    runtime = ServiceRuntime(settings)
    router = APIRouter()

    @router.post("/v1/notes")
    async def note(request: Request) -> dict[str, str]:
        [event] = await runtime.store.append(
            "note-1", 0, [NewEvent.from_data(NOTED, topic, {"n": 1})], actor_id="tester"
        )
        span = trace.get_current_span().get_span_context()
        return {"trace_id": format(span.trace_id, "032x"), "event": str(event.envelope.id)}

    app = create_service_app(
        settings, routers=[router], lifespan=runtime.lifespan, registry=runtime.registry,
        readiness_checks=runtime.readiness_checks(),
    )
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            answer = await client.post(
                "/v1/notes", headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}
            )
            assert answer.status_code == 200, answer.text
            [message] = await read_topic(kafka_bootstrap, topic, 1)
            await asyncio.sleep(0)

    assert answer.json()["trace_id"] == caller_trace
    assert message.id.hex == answer.json()["event"].replace("-", "")
    assert message.traceparent is not None
    assert message.traceparent.split("-")[1] == caller_trace
