"""The Apache Kafka broker's jars, resolved from Maven Central once and cached.

The broker version is pinned in `kafka-pom.xml` beside this file. Storage
formatted by one version is not readable by an older one, so the cache is per
version and the broker formats and runs with the same jar set.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from guestlist.stack import processes

POM = Path(__file__).with_name("kafka-pom.xml")
_MAVEN_NS = "{http://maven.apache.org/POM/4.0.0}"


class KafkaJarsError(RuntimeError):
    """The broker's jars could not be fetched."""


def kafka_version() -> str:
    """The broker version pinned in the pom (the one place it is written)."""
    root = ET.parse(POM).getroot()  # noqa: S314 - our own file
    version = root.findtext(f"{_MAVEN_NS}properties/{_MAVEN_NS}kafka.version")
    if not version:
        raise KafkaJarsError(f"{POM} pins no kafka.version")
    return version.strip()


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "guestlist" / f"kafka-{kafka_version()}"


async def ensure_broker_libs(cache_dir: Path | None = None) -> Path:
    """The directory holding the broker's jars; Maven fills it on first use.

    A marker with the pom's digest is written only after a complete copy, so an
    interrupted download or a changed pom is fetched again. A file lock keeps
    concurrent stacks (tests and `guestlist up`) from fetching twice.
    """
    cache_dir = cache_dir or default_cache_dir()
    libs, marker = cache_dir / "libs", cache_dir / "libs.complete"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == digest and libs.is_dir():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaJarsError("Maven (mvn) is needed once to fetch the Kafka broker jars")
        staging = cache_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copy(POM, cache_dir / "pom.xml")
        argv = [mvn, "-q", "-B", "-f", str(cache_dir / "pom.xml"),
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}"]  # fmt: skip
        try:
            await processes.run(argv, cwd=cache_dir, limit=900)
        except RuntimeError as exc:
            raise KafkaJarsError(f"fetching the Kafka jars failed: {exc}") from exc
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
        return libs
