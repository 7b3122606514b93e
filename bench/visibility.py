"""Commit -> visible: how long after a command's answer its change shows in a read model.

The invitations and projections services run as their own processes (as
deployed: uvicorn, the relay inside invitations, the read-model consumers
inside projections) on the benchmark's PostgreSQL and Kafka. This process
sends ``POST /v1/invitations`` at a steady ``rate`` per second for ``seconds``
(open loop: each command starts at its slot, whatever the others do). When a
command answers 201 (its transaction committed), the clock starts; it stops
when ``GET /v1/invitations?min_position=<its position>`` on the projections
service answers with ``consistency.reached`` — the invitation board's
consumer has applied the event in the transaction that made it readable, which
is what a dashboard's read-your-writes read waits for. The board is read with
a filter no new invitation matches (``status=expired``), so the read opens no
personal data (the projections process has no key-service credentials here);
the wait and the answer are the same as for a full page.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import httpx

from eventkit.testing.tokens import SigningKey, serve_jwks
from guestlist.stack.kafka import create_topics
from guestlist.stack.ports import free_port
from schemas.permissions import ROLE_PERMISSIONS

INVITATION_TOPIC = "invitations.invitation"
LOGS = Path("var/bench")
# A command not visible this long after the last one was sent counts as never visible.
DRAIN_SECONDS = 60.0
# Commands in flight at most (each holds at most two connections): past it, sending
# waits, which shows as an achieved rate below the target rather than as a queue inside
# the client's pool.
IN_FLIGHT = 128


@asynccontextmanager
async def _service(module: str, env: Mapping[str, str], port: int
                   ) -> AsyncIterator[tuple[str, int]]:
    """``python -m <module>`` with ``env``; yields its URL and pid once /readyz answers 200."""
    log_file = LOGS / f"visibility-{module.rsplit('.', 1)[-1]}.log"
    await asyncio.to_thread(LOGS.mkdir, parents=True, exist_ok=True)
    log = await asyncio.to_thread(log_file.open, "wb")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env={**os.environ, **env, "HTTP_PORT": str(port)},
            stdout=log, stderr=log)
    finally:
        log.close()  # the child has its own descriptor
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client, asyncio.timeout(300):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"{module} stopped; see {log_file}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        yield url, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and every process below it, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0)
        todo.extend(children.get(current, []))
    return total / ticks


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(cut[49] * 1000, 1), "p95_ms": round(cut[94] * 1000, 1),
            "p99_ms": round(cut[98] * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


async def run(pg: Any, bootstrap: str, *, rate: float = 200.0, seconds: float = 30.0,
              kafka_pid: int | None = None) -> dict[str, Any]:
    """Start both services, send ``rate`` commands/s for ``seconds``; the figures.

    The report includes the CPU each part used while commands were being sent
    (PostgreSQL and Kafka when this process started them), in per cent of one
    core: where the machine's cores went.
    """
    prefix = f"benchvis{uuid4().hex[:6]}"
    topics = {name: f"{prefix}.{name}" for name in
              ("identity.user", "identity.platform", "notifications.delivery",
               "projections.access")}
    await create_topics(bootstrap, {INVITATION_TOPIC: 3, **{t: 3 for t in topics.values()}})
    invitations_dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    projections_dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
    key = SigningKey("bench")
    token = key.mint(sub=str(UUID(int=7)), exp=int(time.time()) + 3600,
                     permissions=sorted(ROLE_PERMISSIONS["platform_manager"]))
    headers = {"Authorization": f"Bearer {token}"}
    async with serve_jwks(key) as jwks:
        common = {"KAFKA_BOOTSTRAP": bootstrap, "IDENTITY_JWKS_URL": jwks.url,
                  "LOG_LEVEL": "WARNING", "USER_TOPIC": topics["identity.user"],
                  "DELIVERY_TOPIC": topics["notifications.delivery"],
                  "PLATFORM_TOPIC": topics["identity.platform"]}
        invitations_env = {**common, "DATABASE_URL": invitations_dsn,
                           "SCHEDULER_INTERVAL": "3600", "INVITER_SEND_LIMIT": "1000000000"}
        projections_env = {
            **common, "DATABASE_URL": projections_dsn,
            "PROJECTIONS_GROUP_PREFIX": f"{prefix}-projections",
            "INVITATION_TOPIC": INVITATION_TOPIC,
            "ACCESS_TOPIC": topics["projections.access"], "READ_WAIT_SECONDS": "30",
            # Ready only once caught up with what earlier runs left on the topic.
            "READINESS_MAX_LAG": "0",
        }
        print(f"visibility: starting invitations and projections, then {rate:g} commands/s "
              f"for {seconds:g} s…", file=sys.stderr)
        async with _service("services.invitations", invitations_env, free_port()) as (
                commands, invitations_pid), \
                _service("services.projections", projections_env, free_port()) as (
                    reads, projections_pid):
            parts = {"invitations": invitations_pid, "projections": projections_pid,
                     "postgresql": pg.pid, "kafka": kafka_pid}
            # aiohttp, not httpx, for the load: at 400 requests/s httpx's pool bookkeeping
            # alone took most of a core of the two the whole system shares.
            connector = aiohttp.TCPConnector(limit=2 * IN_FLIGHT)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             headers=headers) as session:
                return await _measure(session, commands, reads, rate=rate, seconds=seconds,
                                      parts={k: v for k, v in parts.items() if v})


async def _measure(session: aiohttp.ClientSession, commands: str, reads: str, *,
                   rate: float, seconds: float, parts: Mapping[str, int]) -> dict[str, Any]:
    run_id = uuid4().hex[:8]
    answer_times: list[float] = []
    committed_at: list[float] = []
    visible_after: list[float] = []
    failures: list[str] = []

    slots = asyncio.Semaphore(IN_FLIGHT)

    async def command(n: int) -> None:
        try:
            sent = time.perf_counter()
            async with session.post(f"{commands}/v1/invitations", json={
                    "invitee_email": f"v-{run_id}-{n}@example.org"}) as answer:
                body = await answer.json(content_type=None)
            committed = time.perf_counter()
            if answer.status != 201:
                failures.append(f"create {answer.status}: {str(body)[:200]}")
                return
            answer_times.append(committed - sent)
            committed_at.append(committed)
            params = {"min_position": body["position"], "status": "expired", "limit": "1"}
            while True:  # each read waits up to READ_WAIT_SECONDS on the server
                async with session.get(f"{reads}/v1/invitations", params=params) as read:
                    page = await read.json(content_type=None)
                if read.status != 200:
                    failures.append(f"read {read.status}: {str(page)[:200]}")
                    return
                if page["consistency"]["reached"]:
                    break
            visible_after.append(time.perf_counter() - committed)
        except (aiohttp.ClientError, TimeoutError) as error:
            failures.append(repr(error))
        finally:
            slots.release()

    count = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    cpu_before = {name: _cpu_seconds(pid) for name, pid in parts.items()}
    load_before = time.process_time()  # this process alone, its children apart
    started = time.perf_counter()
    for n in range(count):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(command(n)))
    issued = time.perf_counter() - started
    cpu_percent = {name: round((_cpu_seconds(pid) - cpu_before[name]) / issued * 100, 1)
                   for name, pid in parts.items()}
    cpu_percent["load_generator"] = round((time.process_time() - load_before) / issued * 100, 1)
    _, late = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    span = max(committed_at, default=started) - started
    return {
        "target_commands_per_s": rate, "commands": count, "failed": len(failures),
        "not_visible_within_drain": len(late),
        "first_failures": failures[:3],
        "issued_commands_per_s": round(count / issued, 1),
        # Commands answered 201 over the time from the first send to the last commit.
        "committed_commands_per_s": round(len(committed_at) / span, 1) if span else 0.0,
        "command_answer": _summary(answer_times),
        "commit_to_visible": _summary(visible_after),
        # Per cent of one core while sending; the machine's cores are os.cpu_count().
        "cpu_percent_while_sending": cpu_percent,
        "cores": os.cpu_count(),
    }
