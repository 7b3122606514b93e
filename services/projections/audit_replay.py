"""The audit log as a source for rebuilds: the replay API and where the log is complete.

A rebuild from the audit log asks the audit service (``POST /v1/audit/replays``,
which needs ``export_audit_log``) to publish the read model's event types, in
log order and with their original ``ce_id``, to a topic of the rebuild's own;
``GET /v1/audit/replays/{id}`` says how far it got. The audit consumer group's
committed offsets say where, on each domain topic, the log is known to be
complete: its consumer commits an offset only after the entries below it are
stored, so everything below them is in a replay requested afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from eventkit.kafka_client import Partition, committed_offsets
from eventkit.registry import EventRegistry
from services.projections.readmodels import ReadModel


class AuditReplayError(Exception):
    """The audit service refused the replay, could not be reached, or the replay failed."""


def replay_types(model: ReadModel, registry: EventRegistry) -> list[str] | None:
    """Every ``ce_type`` (older versions that upcast included) the read model follows;
    None (everything) for a model that follows all events."""
    if not model.follows:
        return None
    classes = set(model.follows)
    return sorted(t for t in registry.types() if registry.class_for(t) in classes)


def replay_topic(group_prefix: str, read_model: str, version: int) -> str:
    """The rebuild's own topic; '.replay' at the end keeps it out of the audit log."""
    return f"{group_prefix}.{read_model}.v{version}.replay".lower()


@dataclass(frozen=True, slots=True)
class Replay:
    """A replay as the audit service reports it."""

    replay_id: str
    status: str  # running, completed or failed
    total: int
    published: int
    last_error: str | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Replay:
        return cls(replay_id=str(body["replay_id"]), status=str(body["status"]),
                   total=int(body["total"]), published=int(body["published"]),
                   last_error=body.get("last_error"))


class AuditReplays:
    """The audit service's replay endpoints, with a bearer token holding export_audit_log."""

    def __init__(self, client: httpx.AsyncClient, *, token: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    async def start(self, *, types: Sequence[str] | None, target_topic: str) -> Replay:
        """The whole log (up to its head now) of these types (None: all), published to
        ``target_topic``."""
        body: dict[str, Any] = {"target_topic": target_topic}
        if types is not None:
            body["types"] = list(types)
        return Replay.of(await self._call("POST", "/v1/audit/replays", json=body))

    async def progress(self, replay_id: str) -> Replay:
        return Replay.of(await self._call("GET", f"/v1/audit/replays/{replay_id}"))

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, headers=self._headers, **kwargs)
        except httpx.HTTPError as error:
            raise AuditReplayError(f"the audit service cannot be reached at "
                                   f"{self._client.base_url}: {error!r}") from error
        if response.is_success:
            body = response.json()
            assert isinstance(body, dict)
            return body
        raise AuditReplayError(f"the audit service answered {response.status_code} to "
                               f"{method} {path}: {_problem_text(response)}")


def _problem_text(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(problem, dict):
        return str(problem)[:300]
    fields = "; ".join(f"{e.get('field')}: {e.get('message')}"
                       for e in problem.get("errors") or () if isinstance(e, dict))
    return " — ".join(p for p in (str(problem.get("detail", "")), fields) if p)


async def logged_up_to(
    bootstrap: str, audit_group: str, topics: Sequence[str]
) -> dict[Partition, int]:
    """Per partition of ``topics``, the offset below which the audit log holds every event."""
    wanted = set(topics)
    return {p: offset for p, offset in (await committed_offsets(bootstrap, audit_group)).items()
            if p.topic in wanted}
