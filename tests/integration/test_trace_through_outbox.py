"""One trace from an HTTP request, through the outbox and the relay, to Kafka and a consumer."""

from __future__ import annotations

import asyncio

import httpx
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventkit.envelope import Envelope, EventType
from eventkit.http.app import create_service_app
from eventkit.position import position_of, wait_for_position
from eventkit.runtime import ServiceRuntime, Subscription
from eventkit.store import NewEvent, Transaction
from eventkit.testing.kafka import read_topic
from services.audit.settings import AuditSettings

NOTED = EventType("audit", "Noted", 1)
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_the_request_trace_reaches_kafka_and_the_consumer(
    database_url: str, kafka_bootstrap: str, kafka_topics  # type: ignore[no-untyped-def]
) -> None:
    topic = await kafka_topics("traced")
    settings = AuditSettings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    consumed_in: list[str] = []

    async def note_trace(envelope: Envelope, tx: Transaction) -> None:
        consumed_in.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))

    runtime = ServiceRuntime(
        settings, subscriptions=[Subscription("traced-notes", note_trace, topics=[topic])]
    )
    router = APIRouter()

    @router.post("/v1/notes")
    async def note() -> dict[str, str]:
        [event] = await runtime.store.append(
            "note-1", 0, [NewEvent.from_data(NOTED, topic, {"n": 1})], actor_id="tester"
        )
        span = trace.get_current_span().get_span_context()
        return {"trace_id": format(span.trace_id, "032x"), "position": position_of(event)}

    app = create_service_app(
        settings, routers=[router], lifespan=runtime.lifespan, registry=runtime.registry,
        readiness_checks=runtime.readiness_checks(),
    )
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)  # the app factory installed the SDK
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            answer = await client.post(
                "/v1/notes", headers={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}
            )
            assert answer.status_code == 200, answer.text
            [message] = await read_topic(kafka_bootstrap, topic, 1)
            assert await wait_for_position(
                runtime.store, "traced-notes", answer.json()["position"], within=30
            )
            await asyncio.sleep(0)

    # The request span continued the caller's trace, the message carries it...
    assert answer.json()["trace_id"] == CALLER_TRACE
    assert message.traceparent is not None
    assert message.traceparent.split("-")[1] == CALLER_TRACE
    # ...the consumer ran its handler inside that same trace...
    assert consumed_in == [CALLER_TRACE]
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["consume guestlist.audit.Noted.v1"].context.trace_id == int(CALLER_TRACE, 16)
    # ...and the relay's producer span links to it.
    publish = [s for s in spans.get_finished_spans() if s.name == "outbox publish"]
    assert any(
        link.context.trace_id == int(CALLER_TRACE, 16) for span in publish for link in span.links
    )
