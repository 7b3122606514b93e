"""The projections service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from eventkit.settings import Port, ServiceSettings


class ProjectionsSettings(ServiceSettings):
    service_name: str = "projections"
    http_port: Port = 8005
