"""Readiness checks: can this service do its work right now?

A check is any async callable answering ``(name, ok, detail)``; the app runs
them all on ``GET /readyz``. Others (consumer lag) plug in the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient


class CheckResult(NamedTuple):
    name: str
    ok: bool
    detail: str


ReadinessCheck = Callable[[], Awaitable[CheckResult]]

# A check that hangs would make /readyz hang; the orchestrator wants an answer.
DEFAULT_CHECK_TIMEOUT = 3.0


async def run_checks(
    checks: Iterable[ReadinessCheck], *, seconds_each: float = DEFAULT_CHECK_TIMEOUT
) -> list[CheckResult]:
    async def bounded(index: int, check: ReadinessCheck) -> CheckResult:
        name = getattr(check, "name", None) or f"check-{index}"
        try:
            async with asyncio.timeout(seconds_each):
                return await check()
        except TimeoutError:
            return CheckResult(str(name), False, f"no answer within {seconds_each:g}s")
        except Exception as error:
            return CheckResult(str(name), False, f"{type(error).__name__}: {error}")

    return list(await asyncio.gather(*(bounded(i, c) for i, c in enumerate(checks))))


class DatabaseCheck:
    """``SELECT 1`` on the service's pool (looked up when run: it opens in the lifespan)."""

    name = "database"

    def __init__(self, pool: Callable[[], asyncpg.Pool[Any]], *, timeout: float = 2.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def __call__(self) -> CheckResult:
        try:
            answer = await self._pool().fetchval("SELECT 1", timeout=self._timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, RuntimeError) as error:
            return CheckResult(self.name, False, f"{type(error).__name__}: {error}")
        return CheckResult(self.name, answer == 1, "SELECT 1 answered")


class KafkaCheck:
    """Fetches cluster metadata; the answer is reused for a few seconds.

    Probes come every few seconds from each orchestrator replica; caching keeps
    them from opening a broker connection each time.
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        timeout: float = 2.0,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._last: tuple[float, CheckResult] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> CheckResult:
        async with self._lock:
            if self._last is not None and self._clock() - self._last[0] < self._cache_seconds:
                return self._last[1]
            result = await self._probe()
            self._last = (self._clock(), result)
            return result

    async def _probe(self) -> CheckResult:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            request_timeout_ms=int(self._timeout * 1000),
            client_id="guestlist-readiness",
        )
        try:
            async with asyncio.timeout(self._timeout):
                await admin.start()
                cluster = await admin.describe_cluster()
        except Exception as error:  # aiokafka raises many unrelated types for "down".
            return CheckResult(self.name, False, f"{type(error).__name__}: {error}")
        finally:
            await admin.close()
        brokers = len(cluster.get("brokers", []))
        return CheckResult(self.name, brokers > 0, f"{brokers} broker(s) reachable")
