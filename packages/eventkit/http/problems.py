"""RFC 9457 problem details: every error a service answers with has this shape.

``type`` is a stable URI a client can switch on; the catalogue below is the one
list of the types eventkit answers with. A service with an error of its own
declares a :class:`ProblemType` next to the code that raises it and raises
:class:`Problem`; the handlers installed by the app factory render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventkit.http.request_id import request_id_of
from eventkit.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE_URI = "https://guestlist.dev/problems/"
# Members defined by RFC 9457; extensions may not overwrite them.
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    title: str
    status: int

    @property
    def uri(self) -> str:
        return f"{PROBLEM_BASE_URI}{self.slug}"


BAD_REQUEST = ProblemType("bad-request", "The request cannot be processed", 400)
MALFORMED_JSON = ProblemType("malformed-json", "The request body is not valid JSON", 400)
INVALID_IDEMPOTENCY_KEY = ProblemType(
    "invalid-idempotency-key", "The Idempotency-Key header is not valid", 400
)
UNAUTHORIZED = ProblemType("unauthorized", "Authentication is required", 401)
FORBIDDEN = ProblemType("forbidden", "Permission denied", 403)
NOT_FOUND = ProblemType("not-found", "Not found", 404)
METHOD_NOT_ALLOWED = ProblemType("method-not-allowed", "Method not allowed", 405)
CONFLICT = ProblemType("conflict", "The request conflicts with the current state", 409)
IDEMPOTENCY_KEY_IN_USE = ProblemType(
    "idempotency-key-in-use", "A request with this Idempotency-Key is still in progress", 409
)
PAYLOAD_TOO_LARGE = ProblemType("payload-too-large", "The request body is too large", 413)
UNSUPPORTED_MEDIA_TYPE = ProblemType("unsupported-media-type", "Unsupported media type", 415)
VALIDATION_ERROR = ProblemType("validation-error", "The request is not valid", 422)
IDEMPOTENCY_KEY_REUSED = ProblemType(
    "idempotency-key-reused", "This Idempotency-Key was used for a different request", 422
)
TOO_MANY_REQUESTS = ProblemType("too-many-requests", "Too many requests", 429)
INTERNAL_ERROR = ProblemType("internal-error", "Internal server error", 500)
SERVICE_UNAVAILABLE = ProblemType("service-unavailable", "Service unavailable", 503)

PROBLEM_TYPES: Final[Mapping[str, ProblemType]] = {
    problem.slug: problem
    for problem in (
        BAD_REQUEST, MALFORMED_JSON, INVALID_IDEMPOTENCY_KEY, UNAUTHORIZED, FORBIDDEN,
        NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT, IDEMPOTENCY_KEY_IN_USE, PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE, VALIDATION_ERROR, IDEMPOTENCY_KEY_REUSED, TOO_MANY_REQUESTS,
        INTERNAL_ERROR, SERVICE_UNAVAILABLE,
    )
}
# An HTTPException raised by the framework (or a route) maps to the type of its status.
_BY_STATUS: Final[Mapping[int, ProblemType]] = {
    problem.status: problem
    for problem in (
        BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT,
        PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, VALIDATION_ERROR, TOO_MANY_REQUESTS,
        INTERNAL_ERROR, SERVICE_UNAVAILABLE,
    )
}


class Problem(Exception):
    """Raise from a route or handler to answer with a problem document.

    ``type_`` is a slug of :data:`PROBLEM_TYPES` or a service's own
    :class:`ProblemType`; ``extra`` become extension members of the body.
    """

    def __init__(
        self,
        *,
        type_: str | ProblemType,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if isinstance(type_, str):
            if type_ not in PROBLEM_TYPES:
                raise ValueError(f"unknown problem type {type_!r}: declare a ProblemType")
            type_ = PROBLEM_TYPES[type_]
        clashing = _STANDARD_MEMBERS & extra.keys()
        if clashing:
            raise ValueError(f"extension members may not replace {sorted(clashing)}")
        self.problem_type = type_
        self.status = status if status is not None else type_.status
        self.title = title or type_.title
        self.detail = detail
        self.instance = instance
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(detail or self.title)


def problem_body(
    request: Request,
    *,
    type_uri: str,
    title: str,
    status: int,
    detail: str | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_uri, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body["instance"] = instance or request.url.path
    request_id = request_id_of(request)
    if request_id is not None:
        body["request_id"] = request_id
    body.update(extra or {})
    return body


def problem_response(
    body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        dict(body), status_code=int(body["status"]), headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def field_name(location: Sequence[int | str]) -> str:
    """``("body", "guests", 0, "email")`` -> ``guests[0].email``."""
    parts = list(location)
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    body = problem_body(
        request, type_uri=exc.problem_type.uri, title=exc.title, status=exc.status,
        detail=exc.detail, instance=exc.instance, extra=exc.extra,
    )
    return problem_response(body, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    broken_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken_json is not None:
        reason = (broken_json.get("ctx") or {}).get("error", "cannot be parsed")
        position = broken_json["loc"][-1] if broken_json.get("loc") else None
        where = f" at character {position}" if isinstance(position, int) else ""
        body = problem_body(
            request, type_uri=MALFORMED_JSON.uri, title=MALFORMED_JSON.title,
            status=MALFORMED_JSON.status, detail=f"{reason}{where}",
        )
        return problem_response(body)
    # Never echo the input: a rejected field may be a password.
    fields = [
        {
            "field": field_name(error.get("loc", ())),
            "in": str(error["loc"][0]) if error.get("loc") else "body",
            "message": str(error.get("msg", "is not valid")),
            "code": str(error.get("type", "invalid")),
        }
        for error in errors
    ]
    names = ", ".join(sorted({f["field"] for f in fields}))
    body = problem_body(
        request, type_uri=VALIDATION_ERROR.uri, title=VALIDATION_ERROR.title,
        status=VALIDATION_ERROR.status, detail=f"Invalid fields: {names}",
        extra={"errors": fields},
    )
    return problem_response(body)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status outside the registry, e.g. 499
        return "Error"


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = _phrase(exc.status_code)
    known = _BY_STATUS.get(exc.status_code)
    if known is not None:
        type_uri, title = known.uri, known.title
    else:
        # RFC 9457's "no further semantics" type for statuses we have no word for.
        type_uri, title = "about:blank", phrase
    # Starlette's default detail only repeats the status phrase.
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == phrase:
        detail = None
    body = problem_body(request, type_uri=type_uri, title=title, status=exc.status_code,
                        detail=detail)
    return problem_response(body, headers=exc.headers)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_middleware(UnhandledErrorMiddleware)


class UnhandledErrorMiddleware:
    """Turns an exception no handler took into a 500 problem that reveals nothing.

    The full error goes to the log under the request id, where an operator
    finds it from the id the client saw.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._log = get_logger("eventkit.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            span = trace.get_current_span()
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            self._log.exception("unhandled error", path=scope.get("path"))
            if started:
                raise  # Too late for a problem document; let the server drop the connection.
            request = Request(scope)
            body = problem_body(
                request, type_uri=INTERNAL_ERROR.uri, title=INTERNAL_ERROR.title,
                status=INTERNAL_ERROR.status,
                detail="Something went wrong on our side; quote the request id if you report it.",
            )
            await problem_response(body)(scope, receive, send)
