"""Every service's OpenAPI document, saying what its errors really are: RFC 9457 problems.

FastAPI declares every 422 as ``application/json`` with its own
``HTTPValidationError`` shape; the service answers every 4xx as
``application/problem+json`` (``eventkit.http.problems``). The document is
rewritten once so clients and schemathesis see the answers they get.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from eventkit.http.problems import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "Stable URI of the problem type."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "field": {"type": "string", "description": "The request field at fault, if one is."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"}, "in": {"type": "string"},
                    "message": {"type": "string"}, "code": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
_PROBLEM = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_ANSWER = {"description": "A problem: bad input, no valid token, not allowed, a rule broken",
           "content": _PROBLEM}


def declare_problems(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare its 4xx answers as problem documents."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path in document.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses["4XX"] = _ANSWER
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
