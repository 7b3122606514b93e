"""Settings every service shares, read from the environment once at start-up.

A service subclasses :class:`ServiceSettings` to give its name and default
port. :func:`load_settings` turns pydantic's validation error into one
message that names each environment variable at fault, so a bad deployment
stops before it serves a request instead of failing on first use.
"""

from __future__ import annotations

import json
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]


def _seconds_or_iso(value: object) -> object:
    # TTL=86400 means seconds; ISO 8601 (PT24H) and pydantic's own forms still work.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


# A length of time from the environment: whole seconds or ISO 8601. A type rather
# than a validator method, so a subclass's validators cannot shadow it.
Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class OtelExporter(StrEnum):
    NONE = "none"
    CONSOLE = "console"
    OTLP = "otlp"


class ConfigurationError(Exception):
    """The environment does not describe a service that can start."""


class ServiceSettings(BaseSettings):
    """What every Guestlist service needs to start; each field is one variable."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        # A typo'd default should fail as loudly as a typo'd variable.
        validate_default=True,
    )

    service_name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    http_host: str = "127.0.0.1"
    http_port: Port
    # The service's own database; secret because a URL may carry a password.
    database_url: SecretStr
    kafka_bootstrap: str = "127.0.0.1:9092"

    identity_jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "http://127.0.0.1:8001"
    jwt_audience: str = "guestlist"
    # Keys are refetched after this long even when nothing is unknown.
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # An unknown kid refetches the key set at most this often (rotation, not abuse).
    jwks_refetch_interval_seconds: float = Field(default=30.0, ge=0)

    log_level: LogLevel = "INFO"
    log_format: LogFormat = LogFormat.JSON

    readiness_max_lag: int = Field(default=1000, ge=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    otel_exporter: OtelExporter = OtelExporter.NONE
    otel_exporter_otlp_endpoint: str | None = None

    idempotency_ttl: Duration = Field(default=timedelta(hours=24), gt=timedelta(0))

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        scheme, separator, rest = value.get_secret_value().partition("://")
        if not separator or scheme not in {"postgres", "postgresql"}:
            raise ValueError("must be a postgresql://user@host:port/database URL")
        if "/" not in rest or not rest.rsplit("/", 1)[1].split("?", 1)[0]:
            raise ValueError("must name the service's own database (…/guestlist_<service>)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        # Accept both a JSON list and the friendlier "https://a,https://b".
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @property
    def database_dsn(self) -> str:
        """The database URL in clear, for the driver only; never log it."""
        return self.database_url.get_secret_value()


class KeyReaderSettings(ServiceSettings):
    """A service that opens personal data: the key owners it asks, and with which client.

    Identity owns the keys of people, invitations those of invitees; both are read
    with a token identity issues to ``SERVICE_CLIENT_ID`` / ``SERVICE_CLIENT_SECRET``
    (without a secret every read of personal data fails). Each service sets its
    own client id as the default.
    """

    identity_url: str = "http://127.0.0.1:8001"
    invitations_url: str = "http://127.0.0.1:8002"
    service_client_id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    service_client_secret: SecretStr | None = None
    # An answer of a key owner (an erasure too) is reused this long.
    personal_data_cache_seconds: float = Field(default=30.0, ge=0)


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def environment_variable(settings_type: type[BaseSettings], location: tuple[Any, ...]) -> str:
    """The variable a validation error points at (``DATABASE_URL``, ``HTTP_PORT`` …)."""
    if not location:
        return "(settings)"
    field = str(location[0])
    prefix = str(settings_type.model_config.get("env_prefix") or "")
    info = settings_type.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    name = alias if isinstance(alias, str) else f"{prefix}{field}"
    return name.upper()


def load_settings(settings_type: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read and validate the environment, or raise one error naming every bad variable."""
    try:
        return settings_type(**overrides)
    except ValidationError as error:
        lines = [
            f"  {environment_variable(settings_type, tuple(item['loc']))}: {item['msg']}"
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise ConfigurationError(
            f"{settings_type.__name__}: invalid configuration\n" + "\n".join(lines)
        ) from None
