"""Every Kafka topic the stack creates, in one place (see DESIGN.md).

The broker runs with `auto.create.topics.enable=false`: a topic missing here
does not exist. A service that adds a consumer group adds it to
`CONSUMER_GROUPS`, which gives the group its dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

PARTITIONS: Final = 3
# Failed events are few and read as a list; one partition keeps them in failure order.
DLQ_PARTITIONS: Final = 1

DOMAIN_TOPICS: Final[tuple[str, ...]] = (
    "identity.user",
    "identity.platform",
    "identity.access",
    "invitations.invitation",
    "invitations.access",
    "notifications.delivery",
    "audit.access",
    "projections.access",
)

# One consumer group per consuming service unless a service registers more.
CONSUMER_GROUPS: Final[list[str]] = [
    "identity",
    "invitations",
    "notifications",
    "audit",
    "projections",
]


def dlq_topic(group: str) -> str:
    """Where a consumer group parks the events it could not process."""
    return f"{group}.dlq"


def dlq_topics(groups: Iterable[str] = CONSUMER_GROUPS) -> dict[str, int]:
    return {dlq_topic(group): DLQ_PARTITIONS for group in groups}


def stack_topics(extra_groups: Iterable[str] = ()) -> dict[str, int]:
    """Topic name to partition count, for everything the local stack creates."""
    topics = dict.fromkeys(DOMAIN_TOPICS, PARTITIONS)
    topics |= dlq_topics([*CONSUMER_GROUPS, *extra_groups])
    return topics
