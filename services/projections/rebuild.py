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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from eventkit.kafka_client import Partition
from eventkit.postgres_store import PostgresEventStore
from eventkit.registry import EventRegistry
from services.projections import readmodels
from services.projections.projector import consumer_for
from services.projections.readmodels import ReadModel

Progress = Callable[[int, int], None]


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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
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
    extent = await topic_extent(bootstrap, topics)
    total = sum(end - first for first, end in extent.values())
    runner = consumer_for(model, version, bootstrap=bootstrap, group_prefix=group_prefix,
                          topics=topics, store=PostgresEventStore(pool), registry=registry)
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping), name=f"rebuild {name} v{version}")
    try:
        while True:
            done, finished = await _reached(pool, runner, name, version, extent)
            on_progress(min(done, total), total)
            if finished:
                break
            if running.done():
                running.result()  # raises what stopped it
                raise RebuildError("the rebuild's consumer stopped before the end")
            await asyncio.sleep(poll)
    finally:
        stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, timeout=60.0)
    await _switch(pool, model, version, group_prefix)
    return version


async def _reached(
    pool: asyncpg.Pool[Any], runner: Any, name: str, version: int,
    extent: Mapping[Partition, tuple[int, int]],
) -> tuple[int, bool]:
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
