"""The notifications service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from eventkit.settings import Port, ServiceSettings


class NotificationsSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: Port = 8003
