"""What the local stack creates and how it launches services."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from guestlist.stack import processes, topology
from guestlist.stack.services import ServiceSpec, ServiceStartError, launch, wait_healthy


def test_every_domain_topic_from_the_design_has_three_partitions() -> None:
    topics = topology.stack_topics()
    assert {t: n for t, n in topics.items() if not t.endswith(".dlq")} == {
        "identity.user": 3,
        "identity.platform": 3,
        "identity.access": 3,
        "invitations.invitation": 3,
        "invitations.access": 3,
        "notifications.delivery": 3,
        "audit.access": 3,
        "projections.access": 3,
    }


def test_each_consumer_group_gets_its_dead_letter_topic() -> None:
    topics = topology.stack_topics(extra_groups=["projections.dashboard"])
    assert topics["audit.dlq"] == 1
    assert topics["projections.dashboard.dlq"] == 1
    assert set(topology.dlq_topics()) == {f"{g}.dlq" for g in topology.CONSUMER_GROUPS}


def test_a_service_without_a_main_module_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceStartError, match=r"ghost: there is no runnable module"):
        launch(ServiceSpec("ghost", 8099), {}, log_file=tmp_path / "g.log", die_with_parent=True)


async def test_a_service_that_dies_at_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "broken.log"
    log.write_text("Traceback ...\nConfigurationError: DATABASE_URL is not set\n")
    process = processes.spawn([sys.executable, "-c", "raise SystemExit(3)"], log_file=log)
    with pytest.raises(ServiceStartError) as failure:
        await wait_healthy(ServiceSpec("broken", 8098), process, log, ready_within=10)
    assert "broken exited with 3" in str(failure.value)
    assert "DATABASE_URL is not set" in str(failure.value)
