"""``X-Request-ID``: accepted from the caller or made up, echoed, bound into logs."""

from __future__ import annotations

import re
import uuid

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventkit.logging import bind_request_context, clear_request_context

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id goes into every log line: refuse anything that could forge one.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(connection: HTTPConnection) -> str | None:
    value = connection.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Pure ASGI, so the id stays bound while uvicorn writes the access log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = HTTPConnection(scope).headers.get(REQUEST_ID_HEADER)
        request_id = offered if offered and _ACCEPTABLE.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        bind_request_context(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            clear_request_context("request_id")
