"""Rebuilding a read model: the next version, from the start of the topics, then one switch.

The current version keeps serving (and its consumer keeps applying) while
the next version's tables are filled by a consumer group of their own from
the earliest offsets. The build is done when every partition reached the end
offsets taken when it started; then one UPDATE makes the new version the one
that answers reads, and the running service follows within
``VERSION_POLL_SECONDS`` (its consumer continues from the offsets the build
committed). An interrupted build resumes where it stopped: its tables, inbox
and offsets belong together. The version before the previous one is dropped;
the previous one stays for a while as a way back.

``rebuild_from_audit`` fills the next version from an audit replay instead
(for topics whose retention no longer holds the whole history), then from the
topics past what the log holds, and switches the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from eventkit.consumer import ConsumerRunner, Handled
from eventkit.kafka_client import Partition, committed_offsets, ensure_topics
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventRegistry
from services.projections import audit_replay, readmodels
from services.projections.audit_replay import AuditReplayError, AuditReplays
from services.projections.projector import REBUILD_SETTINGS, consumer_for
from services.projections.readmodels import ReadModel

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]
Stage = Callable[[str], None]


class RebuildError(Exception):
    """The rebuild cannot run (unknown read model, topics missing)."""


async def topic_extent(bootstrap: str, topics: Sequence[str]) -> dict[Partition, tuple[int, int]]:
    """(first, end) offsets of every partition of ``topics`` right now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(list(topics))}
    finally:
        await admin.close()
    partitions = []
    for topic in topics:
        found = described.get(topic)
        if found is None or found["error_code"] != 0 or not found["partitions"]:
            raise RebuildError(f"topic {topic} does not exist")
        partitions += [TopicPartition(topic, p["partition"]) for p in found["partitions"]]
    # A fresh client knows no partition leaders yet: its first offsets request fails
    # as stale and is retried once the metadata came, after ``retry_backoff_ms``
    # (100 ms by default, twice here: 0.2 s of every rebuild's start).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                retry_backoff_ms=5)
    await consumer.start()
    try:
        first = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {Partition(tp.topic, tp.partition): (int(first[tp]), int(end[tp])) for tp in partitions}


async def rebuild(
    *, pool: asyncpg.Pool[Any], bootstrap: str, models: Mapping[str, ReadModel], name: str,
    topics: Sequence[str], group_prefix: str, registry: EventRegistry,
    on_progress: Progress = lambda done, total: None, poll: float = 0.2,
) -> int:
    """Build the next version of ``name`` and switch to it; answer the new version."""
    model, version = await _begin(pool, models, name)
    extent = await topic_extent(bootstrap, topics)
    total = sum(end - first for first, end in extent.values())
    committed = asyncio.Event()
    runner = consumer_for(model, version, bootstrap=bootstrap, group_prefix=group_prefix,
                          topics=topics, store=PostgresEventStore(pool), registry=registry,
                          on_handled=_setting(committed), settings=REBUILD_SETTINGS)

    async def done() -> bool:
        reached, finished = await _reached(pool, runner, name, version, extent)
        on_progress(min(reached, total), total)
        return finished

    await _run_until(runner, done, poll=poll, what=f"rebuild {name} v{version}",
                     woken=committed)
    await _switch(pool, model, version, group_prefix)
    return version


async def rebuild_from_audit(
    *, pool: asyncpg.Pool[Any], bootstrap: str, models: Mapping[str, ReadModel], name: str,
    topics: Sequence[str], group_prefix: str, registry: EventRegistry, replays: AuditReplays,
    audit_group: str, on_progress: Progress = lambda done, total: None,
    on_stage: Stage = lambda stage: None, poll: float = 0.2, replication_factor: int = 1,
) -> int:
    """Build the next version of ``name`` from an audit replay, catch up, switch; the version.

    1. The audit group's committed offsets on ``topics`` are read first: every event
       below them is in the log, so in the replay requested right after.
    2. The replay of the read model's types goes to a topic of this version's own,
       applied by the version's consumer group until the replay completed and the
       topic is drained.
    3. The group then reads ``topics`` from those offsets to their ends (events the
       replay carried too are skipped by the inbox, as for any redelivery), then the
       switch; the service's consumer carries on from there.
    """
    model, version = await _begin(pool, models, name)
    group = readmodels.group_name(group_prefix, name, version)
    logged = await audit_replay.logged_up_to(bootstrap, audit_group, topics)
    target = audit_replay.replay_topic(group_prefix, name, version)
    await ensure_topics(bootstrap, [target], partitions=1, replication_factor=replication_factor)
    try:
        started = await replays.start(types=audit_replay.replay_types(model, registry),
                                      target_topic=target)
    except AuditReplayError as error:
        raise RebuildError(str(error)) from error
    on_stage(f"replaying {name} from the audit log")
    store = PostgresEventStore(pool)
    committed = asyncio.Event()
    replayed = consumer_for(model, version, bootstrap=bootstrap, group_prefix=group_prefix,
                            topics=[target], store=store, registry=registry,
                            on_handled=_setting(committed), settings=REBUILD_SETTINGS)
    settled: dict[Partition, tuple[int, int]] = {}
    totals = {"replay": started.total, "topics": 0}

    async def replay_done() -> bool:
        if not settled:
            try:
                replay = await replays.progress(started.replay_id)
            except AuditReplayError as error:
                raise RebuildError(str(error)) from error
            if replay.status == "failed":
                raise RebuildError(f"the audit replay {replay.replay_id} failed: "
                                   f"{replay.last_error}")
            totals["replay"] = replay.total
            if replay.status != "completed":
                on_progress(min(await _applied_offsets(pool, name, version, target),
                                replay.total), replay.total)
                return False
            # Complete: the topic's end is final now.
            settled.update(await topic_extent(bootstrap, [target]))
        reached, finished = await _reached(pool, replayed, name, version, settled)
        on_progress(min(reached, totals["replay"]), totals["replay"])
        return finished

    await _run_until(replayed, replay_done, poll=poll, what=f"rebuild {name} v{version}",
                     woken=committed)
    on_stage(f"catching up {name} on the topics")
    await _start_group_at(bootstrap, group, logged)
    starts = await committed_offsets(bootstrap, group)
    extent = {p: (max(first, min(starts.get(p, first), end)), end)
              for p, (first, end) in (await topic_extent(bootstrap, topics)).items()}
    totals["topics"] = sum(end - first for first, end in extent.values())
    runner = consumer_for(model, version, bootstrap=bootstrap, group_prefix=group_prefix,
                          topics=topics, store=store, registry=registry,
                          on_handled=_setting(committed), settings=REBUILD_SETTINGS)

    async def caught_up() -> bool:
        reached, finished = await _reached(pool, runner, name, version, extent)
        total = totals["replay"] + totals["topics"]
        on_progress(totals["replay"] + min(reached, totals["topics"]), total)
        return finished

    await _run_until(runner, caught_up, poll=poll, what=f"rebuild {name} v{version}",
                     woken=committed)
    await _switch(pool, model, version, group_prefix)
    await _drop_topic(bootstrap, target)
    return version


async def _begin(
    pool: asyncpg.Pool[Any], models: Mapping[str, ReadModel], name: str
) -> tuple[ReadModel, int]:
    """The read model and the version being built (an interrupted build's, or the next)."""
    model = models.get(name)
    if model is None:
        raise RebuildError(f"no read model {name!r}; there are {', '.join(sorted(models))}")
    async with pool.acquire() as connection:
        await readmodels.prepare(connection, [model])
        async with connection.transaction():
            row = await connection.fetchrow(
                "SELECT active_version, building_version FROM read_models WHERE name = $1 "
                "FOR UPDATE", name)
            assert row is not None
            version = int(row["building_version"] or row["active_version"] + 1)
            await connection.execute(
                "UPDATE read_models SET building_version = $2 WHERE name = $1", name, version)
        await readmodels.create_version(connection, model, version)
    return model, version


def _setting(event: asyncio.Event) -> Callable[[Handled], Awaitable[None]]:
    """An ``on_handled`` hook setting ``event`` (the consumer calls it once a batch committed)."""

    async def handled(_: Handled) -> None:
        event.set()

    return handled


async def _run_until(
    runner: ConsumerRunner, done: Callable[[], Awaitable[bool]], *, poll: float, what: str,
    woken: asyncio.Event | None = None,
) -> None:
    """Run ``runner`` until ``done()``; it has left its group when this returns.

    ``done()`` is asked every ``poll`` seconds, and as soon as ``woken`` is set (by a
    committed batch), so the end is seen when the last batch commits, not up to a poll
    later.
    """
    stopping = asyncio.Event()
    woken = woken or asyncio.Event()
    running = asyncio.create_task(runner.run(stopping), name=what)
    try:
        while True:
            woken.clear()
            if await done():
                break
            if running.done():
                running.result()  # raises what stopped it
                raise RebuildError("the rebuild's consumer stopped before the end")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=poll)
    finally:
        stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, timeout=60.0)


async def _applied_offsets(pool: asyncpg.Pool[Any], name: str, version: int, topic: str) -> int:
    return int(await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM read_model_checkpoints "
        "WHERE name = $1 AND version = $2 AND topic = $3", name, version, topic))


async def _start_group_at(bootstrap: str, group: str, offsets: Mapping[Partition, int]) -> None:
    """Move ``group`` forward to ``offsets`` where it stands before them (never back)."""
    if not offsets:
        return
    partitions = [TopicPartition(p.topic, p.partition) for p in offsets]
    # The group has no member now (the replay's consumer left it), so a plain client
    # may commit for it.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        moved = {}
        for tp in partitions:
            offset = offsets[Partition(tp.topic, tp.partition)]
            if (await consumer.committed(tp) or 0) < offset:
                moved[tp] = offset
        if moved:
            await consumer.commit(moved)
    finally:
        await consumer.stop()


async def _drop_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except KafkaError as error:  # a leftover replay topic harms nothing
        log.warning("replay topic not deleted", topic=topic, error=repr(error))
    finally:
        await admin.close()


async def _reached(
    pool: asyncpg.Pool[Any], runner: Any, name: str, version: int,
    extent: Mapping[Partition, tuple[int, int]],
) -> tuple[int, bool]:
    """Events done over ``extent`` ((start, end) per partition), and whether all reached end."""
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset FROM read_model_checkpoints "
        "WHERE name = $1 AND version = $2", name, version)
    at = {Partition(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}
    # A partition whose last events were all duplicates has no newer checkpoint: the
    # consumer having nothing left to read there counts as reaching the end too.
    drained = {p for p, lag in (await runner.partition_lags()).items() if lag == 0}
    done, finished = 0, True
    for partition, (first, end) in extent.items():
        reached = end if partition in drained else max(first, at.get(partition, first))
        done += min(reached, end) - first
        finished = finished and reached >= end
    return done, finished


async def _switch(pool: asyncpg.Pool[Any], model: ReadModel, version: int, prefix: str) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "UPDATE read_models SET active_version = $2, building_version = NULL, "
            "switched_at = now() WHERE name = $1", model.name, version)
        retired = version - 2
        if retired >= 1:
            await connection.execute(model.drop_sql(retired))
            await connection.execute(
                "DELETE FROM read_model_checkpoints WHERE name = $1 AND version = $2",
                model.name, retired)
            await connection.execute("DELETE FROM processed_events WHERE consumer = $1",
                                     readmodels.group_name(prefix, model.name, retired))
