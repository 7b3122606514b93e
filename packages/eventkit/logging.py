"""Structured logs: one JSON object per line, secrets removed before rendering.

structlog and the standard library (uvicorn, asyncpg, aiokafka) share one
processor chain, so every line carries the service, the request id bound by
the HTTP middleware and the active span's trace id, and goes through the
same redaction.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

from eventkit.settings import LogFormat

REDACTED = "[redacted]"

# A key is secret when any of these appears in it ("refresh_token", "X-Api-Key").
_SECRET_PARTS = (
    "password", "passwd", "secret", "token", "authorization", "cookie",
    "api_key", "apikey", "private_key", "credential", "database_url", "dsn",
)
# "code" is a secret as a confirmation or reset code, not as a status code.
_HARMLESS_CODES = frozenset(
    {"status", "http_status", "status_code", "exit", "error", "country", "language",
     "locale", "currency", "response"}
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[-.\s]+")
# Secrets that show up inside a value whatever its key.
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.IGNORECASE)
_ASSIGNMENT = re.compile(
    # A bare "code" too: invitation, confirmation and reset codes travel as ?code=…
    r"(?P<name>\b(?:[\w-]*(?:password|passwd|secret|token|api[_-]?key)[\w-]*|code))"
    r"(?P<sep>\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&]+)",
    re.IGNORECASE,
)

# Marks our handler so reconfiguring replaces it but leaves others (pytest's) alone.
_HANDLER_FLAG = "_eventkit_handler"


def _normalise(key: str) -> str:
    return _SEPARATORS.sub("_", _CAMEL.sub("_", key)).lower()


def is_secret_key(key: str) -> bool:
    name = _normalise(key)
    if any(part in name for part in _SECRET_PARTS):
        return True
    if name == "code":
        return True
    if name.endswith("_code"):
        return name.removesuffix("_code") not in _HARMLESS_CODES
    return False


def scrub_text(text: str) -> str:
    """Remove bearer credentials, ``password=…`` pairs and URL passwords from free text."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _ASSIGNMENT.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}:{REDACTED}@", text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret keys masked, recursively through containers."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_key(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last word before rendering, so nothing slips past it."""
    redacted = redact(event_dict)
    assert isinstance(redacted, dict)
    return redacted


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def _service_adder(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def _drop_duplicates(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn repeats each message with ANSI colours in "color_message", and a record
    # another handler formatted first carries its text again in "message".
    event_dict.pop("color_message", None)
    if event_dict.get("message") == event_dict.get("event"):
        event_dict.pop("message", None)
    return event_dict


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is when a record is emitted.

    Bound at emit time, not at configuration time, so a replaced stdout
    (pytest's capture, a supervisor's pipe swap) still receives the lines.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure_logging(
    *, service: str, level: str = "INFO", fmt: LogFormat = LogFormat.JSON
) -> None:
    """Route structlog and the standard library through one chain to stdout.

    Process-wide by nature (logging is global); the composition root calls it.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _service_adder(service),
        add_trace_context,
        _drop_duplicates,
    ]
    renderer: Processor
    if fmt is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
        final: list[Processor] = [
            # Locals stay out: a frame's variables may hold a request body with a password.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_secrets,
            renderer,
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        final = [redact_secrets, renderer]

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Caching would pin loggers made before a reconfiguration (tests build many apps).
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _StdoutHandler()
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_FLAG, True)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_FLAG, False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs its own handlers unless told otherwise; send its records to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


def bind_request_context(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear_request_context(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger
