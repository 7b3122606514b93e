"""A real Apache Kafka broker from its Maven Central jars, or one that already runs.

One KRaft node that is both broker and controller, on loopback, as described
in KAFKA.md; the jars come from `kafka_jars`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from guestlist.stack import processes
from guestlist.stack.kafka_jars import ensure_broker_libs
from guestlist.stack.ports import LOOPBACK, port_open

_TOPIC_ALREADY_EXISTS = 36
_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# Per-partition chatter: tests create many small topics.
logger.state.name = state.change.logger
logger.state.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.cluster.name = kafka.cluster
logger.cluster.level = WARN
"""
# The storage tool prints the whole broker config at INFO; keep only problems.
_LOG4J2_TOOLS = _LOG4J2.replace("rootLogger.level = INFO", "rootLogger.level = WARN")


class KafkaStartError(RuntimeError):
    """The broker could not be fetched, formatted or reached in time."""


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise KafkaStartError("Java 17+ is needed for the Kafka broker (no `java` found)")
    return java


def _random_cluster_id() -> str:
    # Kafka's own format: 16 random bytes, URL-safe base64 without padding; it
    # never hands out ids starting with '-' (they read as command-line flags).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker:
    """One combined broker/controller under `base_dir`: `data/`, config files, `broker.log`."""

    def __init__(
        self,
        base_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        *,
        libs_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.base_dir = base_dir.resolve()
        self.port = port
        self.controller_port = controller_port
        self.libs_dir = libs_dir
        self.settings = dict(settings or {})
        self.die_with_parent = die_with_parent
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def server_properties(self) -> dict[str, str]:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # Defaults assume three brokers; one node would have no group coordinator.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "3",
            # Every topic is created on purpose, with its partition count.
            "auto.create.topics.enable": "false",
        }
        return properties | self.settings

    async def start(self, ready_within: float = 90.0) -> None:
        for port in (self.port, self.controller_port):
            if await port_open(port):
                raise KafkaStartError(f"port {port} is already in use on {LOOPBACK}")
        libs = self.libs_dir or await ensure_broker_libs()
        java = _java()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        log4j = self.base_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        tools_log4j = self.base_dir / "log4j2-tools.properties"
        tools_log4j.write_text(_LOG4J2_TOOLS)
        classpath = ["-cp", f"{libs}/*"]
        # Static voters: a plain format, no --standalone (that is for a dynamic quorum).
        # --ignore-formatted still insists on the id already on disk, so reuse it.
        cluster_id = self.cluster_id() or _random_cluster_id()
        format_argv = [java, f"-Dlog4j2.configurationFile={tools_log4j}", *classpath,
                       "kafka.tools.StorageTool", "format", "-t", cluster_id,
                       "-c", str(config), "--ignore-formatted"]  # fmt: skip
        try:
            await processes.run(format_argv, cwd=self.base_dir, limit=120)
        except RuntimeError as exc:
            raise KafkaStartError(f"formatting the Kafka log dir failed: {exc}") from exc
        argv = [java, "-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", *classpath,
                "kafka.Kafka", str(config)]  # fmt: skip
        self._process = processes.spawn(
            argv,
            log_file=self.log_file,
            cwd=self.base_dir,
            die_with_parent=signal.SIGTERM if self.die_with_parent else None,
        )
        await self._wait_until_ready(ready_within)

    def cluster_id(self) -> str | None:
        meta = self.data_dir / "meta.properties"
        with contextlib.suppress(OSError):
            for line in meta.read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "cluster.id":
                    return value.strip()
        return None

    async def _wait_until_ready(self, ready_within: float) -> None:
        deadline = time.monotonic() + ready_within
        expected, last_error = self.cluster_id(), "the port never opened"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise KafkaStartError(
                    f"the Kafka broker exited with {self._process.returncode}; "
                    f"end of {self.log_file}:\n{processes.log_tail(self.log_file)}"
                )
            # Ready means a client's metadata request succeeds, not a log line.
            if await port_open(self.port):
                try:
                    cluster = await describe_cluster(self.bootstrap, with_group_coordinator=True)
                except KafkaError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if cluster == expected:
                        return
                    last_error = f"port {self.port} is answered by cluster {cluster}"
            await asyncio.sleep(0.3)
        await self.stop()
        raise KafkaStartError(
            f"the Kafka broker on {self.bootstrap} was not ready within {ready_within:.0f}s "
            f"({last_error}); end of {self.log_file}:\n{processes.log_tail(self.log_file)}"
        )

    async def stop(self, grace: float = 30.0) -> None:
        """Controlled shutdown on SIGTERM; SIGKILL if it hangs."""
        if self._process is None:
            return
        await processes.stop(self._process, first=signal.SIGTERM, grace=grace)
        self._process = None


class ExternalKafka:
    """A broker that already runs (`KAFKA_BOOTSTRAP`); start and stop leave it alone."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
        self.pid: int | None = None

    async def start(self, ready_within: float = 15.0) -> None:
        try:
            await asyncio.wait_for(describe_cluster(self.bootstrap), ready_within)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaStartError(f"cannot reach KAFKA_BOOTSTRAP={self.bootstrap}: {exc}") from exc

    async def stop(self, grace: float = 30.0) -> None:
        return None


async def describe_cluster(bootstrap: str, *, with_group_coordinator: bool = False) -> str:
    """The cluster id, from a real metadata round trip.

    `with_group_coordinator` also waits for a group coordinator, which makes the
    broker create its offsets topic now rather than on the first consumer's join.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="guestlist-stack", request_timeout_ms=5000
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if with_group_coordinator:
            await admin.find_coordinator("guestlist-stack-probe")
        return str(cluster["cluster_id"])
    finally:
        await admin.close()


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    replication: int = 1,
    ready_within: float = 30.0,
) -> None:
    """Create each topic with its partition count; existing topics are left as they are.

    Returns once every partition has a leader, so a producer or consumer
    started right after does not race the controller.
    """
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="guestlist-stack")
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication) for name, partitions in topics.items()],
            timeout_ms=int(ready_within * 1000),
        )
        failed = [
            f"{topic}: {message or code}"
            for topic, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise KafkaError(f"creating topics failed: {'; '.join(failed)}")
        await _wait_for_leaders(admin, list(topics), ready_within)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        described = await admin.describe_topics(names)
        pending = [
            t["topic"]
            for t in described
            if t["error_code"] != 0
            or not t["partitions"]
            or any(p["leader"] < 0 for p in t["partitions"])
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topics without a leader after {within:.0f}s: {pending}")
        await asyncio.sleep(0.1)
