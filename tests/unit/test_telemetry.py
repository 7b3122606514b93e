"""The traceparent stored with an event lets the relay and consumers continue the trace."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from eventkit.telemetry import context_from_traceparent, current_traceparent


def test_no_traceparent_outside_a_span() -> None:
    assert current_traceparent() is None


def test_a_consumer_span_continues_the_writers_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /v1/invitations") as writer:
        stored = current_traceparent()
    assert stored is not None
    writer_context = writer.get_span_context()
    # version-trace id-parent span id-flags (sampled, and "random" on newer SDKs)
    assert stored.startswith(f"00-{writer_context.trace_id:032x}-{writer_context.span_id:016x}-")

    with tracer.start_as_current_span(
        "consume InvitationCreated", context=context_from_traceparent(stored)
    ) as consumer:
        parent = consumer.parent  # type: ignore[attr-defined]

    assert consumer.get_span_context().trace_id == writer_context.trace_id
    assert parent is not None and parent.span_id == writer_context.span_id


def test_a_broken_traceparent_starts_a_new_trace() -> None:
    tracer = TracerProvider().get_tracer("test")

    for broken in (None, "", "not-a-traceparent"):
        with tracer.start_as_current_span("consume", context=context_from_traceparent(broken)) as s:
            assert trace.get_current_span() is s
            assert s.parent is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("exporter", "traced"), [("none", False), ("console", True)])
def test_queries_are_traced_only_where_spans_are_exported(exporter: str, traced: bool) -> None:
    # asyncpg is instrumented process-wide, so each case gets a process of its own.
    probe = (
        "from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor\n"
        "from eventkit.http.app import create_service_app\n"
        "from services.audit.settings import AuditSettings\n"
        "create_service_app(AuditSettings(database_url='postgresql://x@127.0.0.1/x',"
        f" kafka_bootstrap='127.0.0.1:1', otel_exporter='{exporter}'))\n"
        "print(AsyncPGInstrumentor().is_instrumented_by_opentelemetry)\n"
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    assert answer.stdout.strip().splitlines()[-1] == str(traced)
