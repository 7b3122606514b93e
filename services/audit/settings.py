"""The audit service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from eventkit.settings import Port, ServiceSettings


class AuditSettings(ServiceSettings):
    service_name: str = "audit"
    http_port: Port = 8004
