"""A subject's events as the audit log holds them, read for the person's data export.

The audit service keeps every event of every service, and its timeline of a
subject (``GET /v1/audit/subjects/{id}/timeline``) answers them in log order
with personal fields in clear while their key exists. Identity reads it with
a token it signs itself: subject ``service_subject("identity")``, only the
permission ``view_audit_log``, valid for a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from eventkit.logging import get_logger
from services.identity.handlers import service_subject
from services.identity.signing_keys import TokenMinter

SERVICE_NAME = "identity"
TOKEN_TTL = timedelta(minutes=1)
PAGE_SIZE = 500  # the audit service's largest page
log = get_logger("identity.audit_timeline")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    sequence: int
    id: str  # the event's CloudEvents id, as identity's store has it too
    time: datetime
    type: str
    subject: str
    actor: str
    role: str
    data: Any
    named_in: tuple[str, ...] = ()  # the data fields that name the person, when audit says

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> TimelineEntry:
        return cls(
            sequence=int(item["sequence"]), id=str(item["id"]),
            time=datetime.fromisoformat(item["time"]),
            type=str(item["type"]), subject=str(item["subject"]), actor=str(item["actor"]),
            role=str(item["role"]), data=item.get("data"),
            named_in=tuple(str(name) for name in item.get("named_in") or ()),
        )


class TimelineUnavailable(Exception):
    """The audit log could not answer; ``retry_after`` seconds is a fair wait."""

    def __init__(self, reason: str, *, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class TimelineSource(Protocol):
    async def timeline(self, subject: str) -> list[TimelineEntry]:
        """Every entry of ``subject``'s timeline in log order, or TimelineUnavailable."""
        ...


class AuditTimeline:
    """The audit service's timeline over HTTP, every page of it."""

    def __init__(
        self, base_url: str, *, client: httpx.AsyncClient, minter: TokenMinter,
        clock: Callable[[], datetime],
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client
        self._minter = minter
        self._clock = clock

    async def timeline(self, subject: str) -> list[TimelineEntry]:
        token = await self._minter.mint(
            subject=str(service_subject(SERVICE_NAME)), session_id=f"service-{SERVICE_NAME}",
            permissions=frozenset({"view_audit_log"}), now=self._clock(), ttl=TOKEN_TTL,
        )
        url = f"{self._base_url}/v1/audit/subjects/{quote(subject, safe='')}/timeline"
        headers = {"Authorization": f"Bearer {token.token}"}
        entries: list[TimelineEntry] = []
        cursor: str | None = None
        while True:
            params = {"limit": str(PAGE_SIZE)} | ({"cursor": cursor} if cursor else {})
            items, cursor = await self._page(url, params, headers)
            entries.extend(items)
            if cursor is None:
                return entries

    async def _page(
        self, url: str, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[list[TimelineEntry], str | None]:
        try:
            answer = await self._client.get(url, params=params, headers=headers)
        except httpx.HTTPError as error:
            log.warning("audit log unreachable", url=self._base_url, error=repr(error))
            raise TimelineUnavailable("the audit log cannot be reached") from error
        if answer.status_code == 503:
            raise TimelineUnavailable("the audit log cannot open personal data right now",
                                      retry_after=_seconds(answer.headers.get("Retry-After")))
        if answer.status_code != 200:
            # A 401/403 here is a configuration fault (audit does not trust identity's keys).
            log.error("audit log refused the timeline", status=answer.status_code,
                      body=answer.text[:300])
            raise TimelineUnavailable(f"the audit log answered {answer.status_code}")
        try:
            page = answer.json()
            items = [TimelineEntry.from_json(item) for item in page["items"]]
            cursor = page.get("next_cursor")
            if cursor is not None and not isinstance(cursor, str):
                raise TypeError("next_cursor is not a string")
        except (ValueError, KeyError, TypeError) as error:
            log.error("audit log answered an unreadable timeline", error=repr(error))
            raise TimelineUnavailable("the audit log answered something unreadable") from error
        return items, cursor or None


def _seconds(value: str | None, default: int = 5) -> int:
    if value is not None and value.strip().isdigit():
        return max(1, min(int(value), 300))
    return default
