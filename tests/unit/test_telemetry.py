"""The traceparent stored with an event lets the relay and consumers continue the trace."""

from __future__ import annotations

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
