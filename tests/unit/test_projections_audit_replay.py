"""What a rebuild from the audit log asks for: the types each read model follows, and a
replay topic the audit service accepts."""

from __future__ import annotations

import re

import pytest

from schemas.catalog import build_registry
from services.audit.replay import check_target
from services.audit.settings import DEFAULT_TOPIC_PATTERN
from services.projections.audit_replay import replay_topic, replay_types
from services.projections.bootstrap import read_models
from services.projections.settings import ProjectionsSettings

REGISTRY = build_registry()
MODELS = {m.name: m for m in read_models(ProjectionsSettings(database_url="postgresql://x/y"))}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_replay_asks_for_every_type_the_read_model_follows_and_no_other(name: str) -> None:
    types = replay_types(MODELS[name], REGISTRY)

    assert types is not None
    assert {REGISTRY.class_for(t) for t in types} == set(MODELS[name].follows)


def test_the_security_monitor_asks_for_sign_ins_lockouts_and_role_grants_only() -> None:
    assert replay_types(MODELS["security"], REGISTRY) == [
        "guestlist.identity.LoginFailed.v1", "guestlist.identity.LoginSucceeded.v1",
        "guestlist.identity.RoleGranted.v1", "guestlist.identity.UserLockedOut.v1"]


@pytest.mark.parametrize("prefix", ["projections", "t1a2b3c4d5-projections", "Projections.eu"])
def test_the_replay_topic_is_one_the_audit_service_replays_to_and_never_logs(
    prefix: str
) -> None:
    topic = replay_topic(prefix, "directory", 12)

    check_target(topic, log_pattern=DEFAULT_TOPIC_PATTERN)  # raises TargetError if refused
    assert not re.match(DEFAULT_TOPIC_PATTERN, topic)
    assert topic.endswith(".directory.v12.replay")

