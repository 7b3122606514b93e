"""The identity service's settings: every variable of eventkit's ServiceSettings."""

from __future__ import annotations

from typing import Literal

from eventkit.settings import Port, ServiceSettings


class IdentitySettings(ServiceSettings):
    # A Literal: a stray SERVICE_NAME in the environment fails the start, not renames it.
    service_name: Literal["identity"] = "identity"
    http_port: Port = 8001
