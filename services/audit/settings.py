"""The audit service's settings: eventkit's ServiceSettings plus the log's own."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from eventkit.settings import Port, ServiceSettings

# Every Guestlist topic (<service>.<name>) except dead-letter and replay topics.
DEFAULT_TOPIC_PATTERN = r"^(?!.*\.(dlq|replay)$)[a-z][a-z0-9_-]*\.[a-z0-9_.-]+$"


class AuditSettings(ServiceSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["audit"] = "audit"
    http_port: Port = 8004

    # The consumer group and the topics it reads (a pattern: new topics join by themselves).
    audit_consumer_group: str = Field(default="audit", pattern=r"^[A-Za-z0-9._-]+$")
    audit_topic_pattern: str = DEFAULT_TOPIC_PATTERN
    # Where the log's own access events go (AuditLogQueried, ...).
    audit_access_topic: str = Field(default="audit.access", pattern=r"^[A-Za-z0-9._-]+$")
    # The table owner that applies migrations; DATABASE_URL is then a role that
    # may only INSERT and SELECT on the log (services/audit/README.md).
    audit_admin_database_url: SecretStr | None = None

    # Checkpoints: signed every N entries, and every T seconds when the head moved.
    audit_checkpoint_every: int = Field(default=1000, ge=1)
    audit_checkpoint_interval_seconds: float = Field(default=60.0, gt=0)
    # Ed25519 private key (PEM, PKCS#8); generated here for local development if absent.
    audit_signing_key_file: Path = Path("var/audit/checkpoint-signing-key.pem")

    # Processes that recompute a long verification side by side (0: one per CPU).
    audit_verify_processes: int = Field(default=0, ge=0, le=64)

    # The key owners' internal key endpoints (identity: people, invitations: invitees),
    # reached with a token of this service's own credentials from identity; without a
    # secret the timeline cannot reveal personal data (503).
    audit_identity_url: str = "http://127.0.0.1:8001"
    audit_invitations_url: str = "http://127.0.0.1:8002"
    audit_service_client_id: str = "audit"
    audit_service_client_secret: SecretStr | None = None

    @field_validator("audit_topic_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from error
        return value

    @property
    def verify_processes(self) -> int:
        return self.audit_verify_processes or os.cpu_count() or 1

    @property
    def admin_database_dsn(self) -> str | None:
        url = self.audit_admin_database_url
        return url.get_secret_value() if url is not None else None
