"""``python -m services.<name>``: validate settings, build the app, serve it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from eventkit.settings import ConfigurationError, ServiceSettings, load_settings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

# Exit status for a configuration error (as sysexits' EX_USAGE-ish "bad invocation").
EXIT_BAD_CONFIGURATION = 2


def run_service(settings_type: type[SettingsT], build_app: Callable[[SettingsT], FastAPI]) -> None:
    try:
        settings = load_settings(settings_type)
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIGURATION) from None
    app = build_app(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        # Logging is already configured by the app factory; uvicorn's records join it.
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
