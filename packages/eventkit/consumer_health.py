"""How a consumer runner is doing: its Prometheus metrics and its /readyz check.

One ``ConsumerMetrics`` per registry: several runners of one service (one per
group) share it, since a registry refuses a metric name registered twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from eventkit.http.readiness import CheckResult
from eventkit.kafka_client import Partition


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "eventkit_consumer_lag",
            "Messages between the consumer's next offset and the partition's end.",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.processed = Counter(
            "eventkit_consumer_processed",
            "Events applied (handler ran and committed).",
            ["group"],
            registry=registry,
        )
        self.skipped = Counter(
            "eventkit_consumer_skipped",
            "Redelivered events skipped because the inbox had their id.",
            ["group"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "eventkit_consumer_dead_lettered",
            "Messages written to the group's DLQ.",
            ["group"],
            registry=registry,
        )
        self.retries = Counter(
            "eventkit_consumer_retries",
            "Handler attempts that failed and were retried.",
            ["group"],
            registry=registry,
        )
        self._exported: dict[str, set[Partition]] = {}

    def export_lag(self, group: str, lags: Mapping[Partition, int]) -> None:
        """Set the lag of the current assignment; forget partitions no longer held."""
        for partition in self._exported.get(group, set()) - set(lags):
            self.lag.remove(group, partition.topic, str(partition.partition))
        for partition, lag in lags.items():
            self.lag.labels(group, partition.topic, str(partition.partition)).set(lag)
        self._exported[group] = set(lags)


class _Observed(Protocol):
    group: str

    @property
    def running(self) -> bool: ...

    async def lag(self) -> int: ...


class ConsumerLagCheck:
    """Ready while the runner runs and is at most ``max_lag`` messages behind."""

    def __init__(self, runner: _Observed, *, max_lag: int) -> None:
        self.name = f"consumer {runner.group}"
        self._runner = runner
        self._max_lag = max_lag

    async def __call__(self) -> CheckResult:
        if not self._runner.running:
            return CheckResult(self.name, False, "not running")
        lag = await self._runner.lag()
        return CheckResult(self.name, lag <= self._max_lag, f"lag {lag} (max {self._max_lag})")
