"""The invitations service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from eventkit.settings import Port, ServiceSettings


class InvitationsSettings(ServiceSettings):
    service_name: str = "invitations"
    http_port: Port = 8002
