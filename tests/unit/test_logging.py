"""Log lines are JSON with the service, request and trace ids, and never carry a secret."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from eventkit.http.app import create_service_app
from eventkit.logging import REDACTED, configure_logging, redact
from eventkit.settings import LogFormat, ServiceSettings


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_secrets_are_redacted_at_any_depth() -> None:
    event = {
        "user": {"email": "ada@example.org", "password": "hunter2",
                 "sessions": [{"refresh_token": "r1", "id": "s1"}]},
        "headers": {"Authorization": "Bearer abc.def.ghi", "Cookie": "sid=1", "Accept": "*/*"},
        "confirmation_code": "493021",
        "status_code": 201,
        "X-Api-Key": "k",
        "clientSecret": "s",
        "note": "retrying with password=hunter2 against postgresql://app:pw@db/x",
    }

    cleaned = redact(event)

    assert cleaned["user"]["password"] == REDACTED
    assert cleaned["user"]["sessions"] == [{"refresh_token": REDACTED, "id": "s1"}]
    assert cleaned["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED, "Accept": "*/*"}
    assert cleaned["confirmation_code"] == REDACTED
    assert cleaned["status_code"] == 201
    assert cleaned["X-Api-Key"] == cleaned["clientSecret"] == REDACTED
    assert "hunter2" not in cleaned["note"] and ":pw@" not in cleaned["note"]
    assert cleaned["user"]["email"] == "ada@example.org"  # personal, not a secret: kept


def test_structlog_and_stdlib_lines_are_json_with_the_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(service="identity", level="INFO", fmt=LogFormat.JSON)

    structlog.get_logger("identity.sessions").info("signed in", password="hunter2", user="u1")
    logging.getLogger("asyncpg.pool").warning("pool exhausted, dsn=%s", "postgresql://a:pw@h/d")
    logging.getLogger("too.chatty").debug("not shown below INFO")

    first, second = lines(capsys)
    assert first["event"] == "signed in" and first["service"] == "identity"
    assert first["password"] == REDACTED and first["user"] == "u1"
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    assert second["logger"] == "asyncpg.pool" and second["level"] == "warning"
    assert "pw" not in second["event"]


def test_lines_inside_a_span_carry_its_trace_and_span_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(service="audit")
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("export") as span:
        structlog.get_logger().info("exporting")
    structlog.get_logger().info("outside")

    inside, outside = lines(capsys)
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


async def test_lines_logged_during_a_request_carry_its_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServiceSettings(
        service_name="projections", http_port=8005,
        database_url="postgresql://guestlist@127.0.0.1:5432/guestlist_projections",
    )
    app = create_service_app(settings)

    @app.get("/v1/ping")
    async def ping() -> dict[str, str]:
        structlog.get_logger("projections").info("pinged")
        return {"pong": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
        response = await client.get("/v1/ping", headers={"X-Request-ID": "req-7"})
    structlog.get_logger("projections").info("after the request")

    logged = {line["event"]: line for line in lines(capsys)}
    assert response.headers["x-request-id"] == "req-7"
    assert logged["pinged"]["request_id"] == "req-7"
    assert "trace_id" in logged["pinged"]  # the request's server span
    assert "request_id" not in logged["after the request"]


def test_a_code_in_a_query_string_is_scrubbed_but_status_codes_stay() -> None:
    from eventkit.logging import scrub_text

    line = "GET /v1/invitations/lookup?code=Zm9vYmFy&locale=en status_code=200"
    assert scrub_text(line) == (
        "GET /v1/invitations/lookup?code=[redacted]&locale=en status_code=200"
    )
