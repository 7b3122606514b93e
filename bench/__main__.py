"""``python -m bench``: start (or reuse) PostgreSQL and Kafka, run the benchmarks, print JSON.

``DATABASE_URL`` (an admin URL) and ``KAFKA_BOOTSTRAP`` point at existing
servers; otherwise both are started under ``var/bench`` on their own ports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench import append, audit, consume, identity, invitations, notifications, relay
from guestlist.stack.kafka import ExternalKafka, KafkaBroker
from guestlist.stack.postgres import ExternalPostgres, PostgresServer

BENCH_DIR = Path("var/bench")


async def main(events: int, only: set[str], *, rebuild_events: int = 1_000_000
               ) -> dict[str, Any]:
    pg: PostgresServer | ExternalPostgres
    kafka: KafkaBroker | ExternalKafka
    if url := os.environ.get("DATABASE_URL"):
        pg = ExternalPostgres(url)
    else:
        pg = PostgresServer(BENCH_DIR / "postgres", port=55432)
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
        kafka = ExternalKafka(bootstrap)
    else:
        kafka = KafkaBroker(BENCH_DIR / "kafka", port=59092, controller_port=59093)
    print("starting PostgreSQL and Kafka…", file=sys.stderr)
    await asyncio.gather(pg.start(), kafka.start())
    results: dict[str, Any] = {}
    try:
        if "append" in only:
            print("append: eventkit vs eventsourcing…", file=sys.stderr)
            dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
            results["append"] = await append.run(dsn, events=events)
        if "relay" in only or "consume" in only:
            print("relay: outbox -> Kafka vs bare aiokafka producer…", file=sys.stderr)
            dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
            results["relay"] = await relay.run(dsn, kafka.bootstrap, events=events * 5)
        if "consume" in only:
            print("consume: apply with inbox vs bare aiokafka consumer…", file=sys.stderr)
            dsn = await pg.create_database(f"bench_{uuid4().hex[:8]}")
            results["consume"] = await consume.run(
                dsn, kafka.bootstrap, topic=results["relay"]["topic"], events=events * 5
            )
        if "audit" in only:
            print("audit: ingest with hashing vs bare consumer, verify, export…", file=sys.stderr)
            results["audit"] = await audit.run(pg, kafka.bootstrap, events=events * 10)
        if "notifications" in only:
            print("notifications: render + SMTP sink vs aiosmtplib pre-rendered…", file=sys.stderr)
            results["notifications"] = await notifications.run()
        if "identity" in only:
            results["identity"] = await identity.run(pg, kafka.bootstrap)
        if "invitations" in only:
            print("invitations: HTTP single and bulk, 10,000-row CSV to Kafka…", file=sys.stderr)
            results["invitations"] = await invitations.run(pg, kafka.bootstrap)
        if "projections" in only:
            from bench import projections  # wired in one place, read models' own module
            results["projections"] = await projections.run(pg, kafka.bootstrap, events=events * 5)
        if "faust" in only:
            print("faust: windowed failed sign-ins, faust tables vs SQL read model…",
                  file=sys.stderr)
            from bench import faust_windows  # faust is a dev dependency
            results["faust"] = await faust_windows.run(pg, kafka.bootstrap, events=events * 5)
        if "visibility" in only:
            from bench import visibility
            results["visibility"] = await visibility.run(pg, kafka.bootstrap, kafka_pid=kafka.pid)
        if "rebuild" in only:
            from bench import rebuild
            results["rebuild"] = await rebuild.run(pg, kafka.bootstrap, events=rebuild_events)
    finally:
        await asyncio.gather(kafka.stop(), pg.stop())
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=None,
                        help="events per append run (4000); for rebuild, the history (1,000,000)")
    parser.add_argument(
        "--only", default="append,relay,consume,audit",
        help="comma-separated: append,relay,consume,audit,notifications,identity,invitations,"
             "projections,visibility,rebuild",
    )
    args = parser.parse_args()
    report = asyncio.run(main(args.events or 4000, set(args.only.split(",")),
                              rebuild_events=args.events or 1_000_000))
    print(json.dumps(report, indent=2))
