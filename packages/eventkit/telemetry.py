"""Tracing: one TracerProvider per service, W3C trace context across Kafka.

The HTTP request's span is the parent of everything a command does; its
``traceparent`` is stored with each event in the outbox, and the relay and
consumers continue the same trace from it. The envelope carries that header
itself, which is why the aiokafka auto-instrumentation is not used.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.propagate import set_global_textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventkit.settings import OtelExporter, ServiceSettings

_PROPAGATOR = TraceContextTextMapPropagator()
# Probes and scrapes every few seconds would drown the real traces.
_UNTRACED_URLS = "/healthz,/readyz,/metrics"


def _exporter(settings: ServiceSettings) -> SpanExporter | None:
    if settings.otel_exporter is OtelExporter.CONSOLE:
        return ConsoleSpanExporter(service_name=settings.service_name)
    if settings.otel_exporter is OtelExporter.OTLP:
        # Imported here: the protobuf stack is only loaded by services that export.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint
        return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    return None


def create_tracer_provider(settings: ServiceSettings) -> TracerProvider:
    """Spans are recorded even with no exporter, so traceparents are always real."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"guestlist-{settings.service_name}", "service.namespace": "guestlist"}
        )
    )
    exporter = _exporter(settings)
    if exporter is not None:
        # Batching exports from a background thread, never on the event loop.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_tracing(app: FastAPI, provider: TracerProvider, *, trace_queries: bool) -> None:
    """Trace the app's requests with ``provider``, and every asyncpg query if ``trace_queries``.

    Query spans are wanted only where spans go somewhere: the asyncpg
    instrumentation doubles the client's CPU per query (42 µs more on a
    ``SELECT 1``, ~10% of a service's CPU under load), which buys nothing when no
    exporter is configured. Request and Kafka spans are always made, so
    traceparents stay real and the trace continues through the outbox.
    """
    set_global_textmap(TraceContextTextMapPropagator())
    # OpenTelemetry allows one global provider per process; the first service wins,
    # which only matters for code that asks for the global one (tests build many apps).
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=_UNTRACED_URLS,
        # One span per request, not one more per ASGI message sent or received.
        exclude_spans=["receive", "send"],
    )
    asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]  # untyped __init__
    if trace_queries and not asyncpg.is_instrumented_by_opentelemetry:
        # Patches the asyncpg module itself, so once per process.
        asyncpg.instrument(tracer_provider=provider)


async def shutdown_tracing(provider: TracerProvider) -> None:
    # Flushing may wait on the exporter's network call: keep it off the loop.
    await asyncio.to_thread(provider.shutdown)


def current_traceparent() -> str | None:
    """The active span's ``traceparent`` header value, to store with each event."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> Context:
    """A context whose parent is the span that wrote the event (empty if none or invalid)."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({"traceparent": traceparent})
