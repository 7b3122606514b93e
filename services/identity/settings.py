"""The identity service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from eventkit.settings import Port, ServiceSettings


class IdentitySettings(ServiceSettings):
    service_name: str = "identity"
    http_port: Port = 8001
