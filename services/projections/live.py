"""Live changes for Server-Sent Events: the projector's commits, fanned out to listeners.

Each applied batch sends ``pg_notify`` inside its transaction, so a change is
announced only once it is visible, and every replica hears every read model's
changes whatever partitions it consumes. One LISTEN connection per process
feeds any number of subscribers; a slow subscriber loses old changes rather
than holding the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog

from services.projections.readmodels import CHANGES_CHANNEL

log = structlog.get_logger(__name__)
_QUEUE_SIZE = 256


class LiveChanges:
    def __init__(self, *, on_change: Callable[[dict[str, Any]], None] = lambda _: None) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        # Called on every change, before the subscribers' queues (reads waiting for a position).
        self._on_change = on_change
        self._connection: asyncpg.Connection[Any] | None = None

    async def start(self, dsn: str) -> None:
        self._connection = await asyncpg.connect(dsn)
        await self._connection.add_listener(CHANGES_CHANNEL, self._on_notify)

    async def stop(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.close()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            change = json.loads(str(payload))
        except ValueError:
            return
        self._on_change(change)
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(change)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
