"""A service refuses to start on a bad environment, and says which variable is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eventkit.settings import ConfigurationError, LogFormat, OtelExporter, load_settings
from services.identity.settings import IdentitySettings
from services.invitations.settings import InvitationsSettings

DATABASE_URL = "postgresql://guestlist:s3cret@127.0.0.1:5432/guestlist_identity"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "HTTP_PORT", "HTTP_HOST", "KAFKA_BOOTSTRAP", "CORS_ORIGINS",
                 "LOG_LEVEL", "LOG_FORMAT", "OTEL_EXPORTER", "SERVICE_NAME", "IDEMPOTENCY_TTL"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_come_from_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)

    settings = load_settings(IdentitySettings)

    assert (settings.service_name, settings.http_host, settings.http_port) == (
        "identity", "127.0.0.1", 8001,
    )
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.identity_jwks_url == "http://127.0.0.1:8001/.well-known/jwks.json"
    assert settings.log_format is LogFormat.JSON
    assert settings.otel_exporter is OtelExporter.NONE
    assert settings.idempotency_ttl == timedelta(hours=24)
    assert load_settings(InvitationsSettings).http_port == 8002


def test_the_environment_overrides_and_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("HTTP_PORT", "9101")
    monkeypatch.setenv("CORS_ORIGINS", "https://admin.example, https://app.example")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("IDEMPOTENCY_TTL", "3600")

    settings = load_settings(IdentitySettings)

    assert settings.http_port == 9101
    assert settings.cors_origins == ["https://admin.example", "https://app.example"]
    assert settings.log_level == "DEBUG"
    assert settings.idempotency_ttl == timedelta(hours=1)


def test_every_bad_variable_is_named_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "70000")
    monkeypatch.setenv("LOG_FORMAT", "xml")

    with pytest.raises(ConfigurationError) as refused:
        load_settings(IdentitySettings)

    message = str(refused.value)
    assert "DATABASE_URL" in message and "HTTP_PORT" in message and "LOG_FORMAT" in message


def test_a_database_url_must_name_a_postgres_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@127.0.0.1/guestlist")

    with pytest.raises(ConfigurationError, match="DATABASE_URL") as refused:
        load_settings(IdentitySettings)

    assert "hunter2" not in str(refused.value)


def test_the_database_url_is_not_shown_when_settings_are_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)

    settings = load_settings(IdentitySettings)

    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert settings.database_dsn == DATABASE_URL
