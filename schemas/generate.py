"""Write the event contracts as files, or check that the checked-in ones are current.

    python -m schemas.generate          # (re)write schemas/json/*.json, schemas/asyncapi.yaml
    python -m schemas.generate --check  # exit 1 naming each file that differs, is missing, extra

The files are rendered in memory first, so writing and checking compare the
very same text; CI runs the check so a model change without its schema fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from eventkit.envelope import CONTENT_TYPE, SPEC_VERSION, source_of
from eventkit.registry import EventData, EventRegistry
from schemas.catalog import build_registry

PACKAGE_ROOT = Path(__file__).resolve().parent
SCHEMA_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_path(event_class: type[EventData]) -> str:
    return f"{SCHEMA_DIR}/{event_class.event_type}.json"


def event_schema(event_class: type[EventData]) -> dict[str, Any]:
    """The JSON Schema of one event's data, as subscribers should validate it.

    Readers ignore unknown fields (adding an optional field is not a new
    version), so the published schema does not forbid them either; the
    pydantic model stays strict for writers.
    """
    schema = _without_closed_objects(event_class.model_json_schema(mode="validation"))
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{event_class.event_type}.json",
        **schema,
        "x-ce-type": str(event_class.event_type),
        "x-topic": event_class.topic,
    }


def _without_closed_objects(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_closed_objects(value)
            for key, value in node.items()
            if not (key == "additionalProperties" and value is False)
        }
    if isinstance(node, list):
        return [_without_closed_objects(item) for item in node]
    return node


HEADERS_COMPONENT = "CloudEventsKafkaHeaders"


def _common_headers_schema() -> dict[str, Any]:
    """CloudEvents binary-mode headers, as DESIGN.md "Events on the wire" lists them."""
    return {
        "type": "object",
        "required": [
            "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time",
            "content-type", "ce_actorid", "ce_sequence",
        ],
        "properties": {
            "ce_specversion": {"type": "string", "const": SPEC_VERSION},
            "ce_id": {
                "type": "string", "format": "uuid",
                "description": "Unique per event; the deduplication key.",
            },
            "ce_source": {"type": "string", "description": "/guestlist/<service>"},
            "ce_type": {"type": "string", "description": "guestlist.<service>.<Name>.v<N>"},
            "ce_subject": {
                "type": "string", "description": "The aggregate id, also the message key.",
            },
            "ce_time": {
                "type": "string", "format": "date-time", "description": "RFC 3339, UTC.",
            },
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "traceparent": {
                "type": "string", "description": "W3C trace context.",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            },
            "ce_actorid": {
                "type": "string", "description": "Who caused the event: a user id or 'system'.",
            },
            "ce_sequence": {
                "type": "string", "pattern": "^[0-9]+$",
                "description": "The aggregate version after this event, as a decimal string.",
            },
        },
    }


def _headers_schema(event_class: type[EventData]) -> dict[str, Any]:
    """The common headers, with ce_type and ce_source fixed to this event's."""
    return {
        "allOf": [
            {"$ref": f"#/components/schemas/{HEADERS_COMPONENT}"},
            {
                "properties": {
                    "ce_type": {"const": str(event_class.event_type)},
                    "ce_source": {"const": source_of(event_class.event_type.service)},
                }
            },
        ]
    }


def asyncapi_document(registry: EventRegistry) -> dict[str, Any]:
    """AsyncAPI 3.0: one channel per topic, one message per ``ce_type``, payloads by $ref."""
    classes = registry.event_classes()
    messages = {
        str(cls.event_type): {
            "name": cls.event_type.name,
            "title": str(cls.event_type),
            **({"summary": _first_line(cls.__doc__)} if cls.__doc__ else {}),
            "contentType": CONTENT_TYPE,
            "headers": _headers_schema(cls),
            "payload": {"$ref": f"./{schema_path(cls)}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "The aggregate id (ce_subject)."},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        for cls in classes
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in registry.topics():
        on_topic = [cls for cls in classes if cls.topic == topic]
        channels[topic] = {
            "address": topic,
            "messages": {
                str(cls.event_type): {"$ref": f"#/components/messages/{cls.event_type}"}
                for cls in on_topic
            },
        }
        operations[f"{topic}.send"] = {
            "action": "send",
            "summary": f"The {on_topic[0].event_type.service} service publishes to {topic}.",
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [
                {"$ref": f"#/channels/{topic}/messages/{cls.event_type}"} for cls in on_topic
            ],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Guestlist events",
            "version": "1.0.0",
            "description": (
                "CloudEvents 1.0 in Kafka binary mode: attributes in ce_* headers, the "
                "aggregate id as key, the event data as JSON value. Fields marked "
                "x-personal-data are encrypted per person and unreadable after erasure."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local single-node broker started by `guestlist up`.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {HEADERS_COMPONENT: _common_headers_schema()},
            "messages": messages,
        },
    }


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def render(registry: EventRegistry) -> dict[str, str]:
    """Every generated file, as path relative to the schemas package -> text."""
    files = {
        schema_path(cls): json.dumps(
            event_schema(cls), indent=2, sort_keys=True, ensure_ascii=False
        ) + "\n"
        for cls in registry.event_classes()
    }
    files[ASYNCAPI_FILE] = yaml.safe_dump(
        asyncapi_document(registry), sort_keys=False, allow_unicode=True, width=100
    )
    return files


def _present(root: Path) -> set[str]:
    found = {path.relative_to(root).as_posix() for path in (root / SCHEMA_DIR).glob("*.json")}
    if (root / ASYNCAPI_FILE).exists():
        found.add(ASYNCAPI_FILE)
    return found


def drift(expected: Mapping[str, str], root: Path) -> list[str]:
    """One line per file under ``root`` that differs from, lacks or adds to ``expected``."""
    present = _present(root)
    problems = [f"missing: {path}" for path in sorted(set(expected) - present)]
    problems += [f"extra: {path}" for path in sorted(present - set(expected))]
    problems += [
        f"differs: {path}"
        for path in sorted(set(expected) & present)
        if (root / path).read_text(encoding="utf-8") != expected[path]
    ]
    return problems


def write(expected: Mapping[str, str], root: Path) -> list[str]:
    """Make ``root`` hold exactly ``expected``; return what changed, as drift() names it."""
    changes = drift(expected, root)
    (root / SCHEMA_DIR).mkdir(parents=True, exist_ok=True)
    for path in _present(root) - set(expected):
        (root / path).unlink()
    for path, text in expected.items():
        target = root / path
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return changes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if files are not current")
    parser.add_argument("--root", type=Path, default=PACKAGE_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    expected = render(build_registry())
    if args.check:
        problems = drift(expected, args.root)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: uv run python -m schemas.generate", file=sys.stderr)
            return 1
        print(f"{len(expected)} contract files are current")
        return 0
    for change in write(expected, args.root):
        print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
