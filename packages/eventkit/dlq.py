"""Dead-letter queues: where a consumer group parks what it could not process, and the way back.

A dead letter is the original message (same key, value and headers) written to
``<group>.dlq`` with ``dlq_*`` headers saying where it came from and why it
failed. Redrive republishes the original to its topic and partition; progress
is the offset of the consumer group ``<group>.dlq.redrive``, so each entry goes
back once, and the consumers' inbox makes a second delivery harmless anyway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import structlog

from eventkit.envelope import Envelope, EnvelopeError, format_time
from eventkit.kafka_client import (
    ConsumerClient,
    Headers,
    KafkaConsumerClient,
    KafkaMessageSink,
    MessageSink,
    OutgoingMessage,
    Partition,
    ReceivedMessage,
    committed_offsets,
    list_topics,
    read_topics,
)

log = structlog.get_logger(__name__)

DLQ_SUFFIX = ".dlq"
REDRIVE_SUFFIX = ".dlq.redrive"
DLQ_HEADER_PREFIX = "dlq_"
# Kafka headers are not meant for stack traces; the type and message identify the failure.
ERROR_TEXT_LIMIT = 2000


def dead_letter_topic(group: str) -> str:
    return f"{group}{DLQ_SUFFIX}"


def redrive_group(group: str) -> str:
    return f"{group}{REDRIVE_SUFFIX}"


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"


def original_headers(headers: Headers) -> Headers:
    """The message's own headers, without those a dead-lettering added."""
    return tuple((name, value) for name, value in headers if not name.startswith(DLQ_HEADER_PREFIX))


def dead_letter(
    message: ReceivedMessage, *, group: str, error: BaseException, attempts: int, at: datetime
) -> OutgoingMessage:
    """The DLQ record for ``message``; earlier ``dlq_*`` headers are replaced, not repeated."""
    added = {
        "dlq_error": describe_error(error),
        "dlq_group": group,
        "dlq_topic": message.topic,
        "dlq_partition": str(message.partition),
        "dlq_offset": str(message.offset),
        "dlq_attempts": str(attempts),
        "dlq_failed_at": format_time(at),
    }
    headers = original_headers(message.headers) + tuple(
        (name, value.encode()) for name, value in added.items()
    )
    return OutgoingMessage(dead_letter_topic(group), message.key, message.value, headers)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DLQ entry, read back."""

    group: str
    dlq_partition: int
    dlq_offset: int
    topic: str
    partition: int
    offset: int
    event_id: str | None
    type: str | None
    subject: str | None
    error: str
    attempts: int
    failed_at: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    redriven: bool = False

    @classmethod
    def from_message(cls, message: ReceivedMessage, *, redriven: bool = False) -> DeadLetter:
        def header(name: str, default: str = "") -> str:
            found = message.header(name)
            return default if found is None else found

        group = message.topic.removesuffix(DLQ_SUFFIX)
        return cls(
            group=header("dlq_group", group),
            dlq_partition=message.partition,
            dlq_offset=message.offset,
            topic=header("dlq_topic"),
            partition=int(header("dlq_partition", "-1")),
            offset=int(header("dlq_offset", "-1")),
            event_id=message.header("ce_id"),
            type=message.header("ce_type"),
            subject=message.header("ce_subject"),
            error=header("dlq_error"),
            attempts=int(header("dlq_attempts", "0")),
            failed_at=header("dlq_failed_at"),
            key=message.key,
            value=message.value,
            headers=original_headers(message.headers),
            redriven=redriven,
        )

    def original(self) -> OutgoingMessage:
        """The message as it was before it failed, addressed to where it came from."""
        partition = self.partition if self.partition >= 0 else None
        return OutgoingMessage(self.topic, self.key, self.value, self.headers, partition)

    def is_event(self) -> bool:
        """False for a message that is not a CloudEvent: redriving it cannot succeed."""
        try:
            Envelope.from_kafka(self.key, self.value, self.headers)
        except EnvelopeError:
            return False
        return True


async def list_dead_letters(
    bootstrap_servers: str, *, group: str | None = None
) -> list[DeadLetter]:
    """Every entry of one group's DLQ, or of all ``*.dlq`` topics; nothing is committed."""
    existing = await list_topics(bootstrap_servers)
    if group:
        wanted = [dead_letter_topic(group)]
    else:
        wanted = [t for t in existing if t.endswith(DLQ_SUFFIX)]
    topics = [t for t in wanted if t in existing]
    messages = await read_topics(bootstrap_servers, topics)
    progress: dict[str, dict[Partition, int]] = {}
    for topic in topics:
        owner = topic.removesuffix(DLQ_SUFFIX)
        progress[topic] = await committed_offsets(bootstrap_servers, redrive_group(owner))
    return [
        DeadLetter.from_message(
            message, redriven=message.offset < progress[message.topic].get(message.where, 0)
        )
        for message in messages
    ]


@dataclass(frozen=True, slots=True)
class RedriveResult:
    redriven: int
    not_events: int


class _NoRebalanceWork:
    """Redrive commits after every entry, so a rebalance has nothing to flush."""

    async def partitions_revoked(self, partitions: set[Partition]) -> None:
        return None

    async def partitions_assigned(self, partitions: set[Partition]) -> None:
        return None


async def redrive(
    client: ConsumerClient, sink: MessageSink, *, timeout: float = 60.0, idle: float = 0.5
) -> RedriveResult:
    """Republish every entry present when the redrive began; commit after each one.

    ``client`` is a member of the group ``<group>.dlq.redrive`` subscribed to
    ``<group>.dlq``. The end is taken when partitions are first seen, so an
    event that fails again (and lands behind it) waits for the next redrive.
    """
    redriven = not_events = 0
    targets: dict[Partition, int] = {}
    positions: dict[Partition, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await client.start(_NoRebalanceWork())
    await sink.start()
    try:
        while True:
            messages = await client.poll(timeout=idle, max_records=100)
            for partition in client.assignment():
                high = client.highwater(partition)
                if partition not in targets and high is not None:
                    targets[partition] = high
                position = await client.position(partition)
                if position is not None:
                    positions.setdefault(partition, position)
            for message in messages:
                if message.offset >= targets.get(message.where, message.offset + 1):
                    continue
                letter = DeadLetter.from_message(message)
                if letter.is_event():
                    await sink.send(letter.original())
                    redriven += 1
                else:
                    not_events += 1
                    log.warning("not redriving a message that is not an event",
                                dlq_offset=message.offset, error=letter.error)
                await client.commit({message.where: message.offset + 1})
                positions[message.where] = message.offset + 1
            assigned = client.assignment()
            if assigned and all(
                p in targets and positions.get(p, -1) >= targets[p] for p in assigned
            ):
                return RedriveResult(redriven, not_events)
            if loop.time() > deadline:
                raise TimeoutError("redrive did not reach the end of the DLQ in time")
    finally:
        await sink.stop()
        await client.stop()


async def redrive_from_kafka(
    bootstrap_servers: str, *, group: str, timeout: float = 60.0
) -> RedriveResult:
    topic = dead_letter_topic(group)
    if topic not in await list_topics(bootstrap_servers):
        return RedriveResult(0, 0)
    client = KafkaConsumerClient(
        bootstrap_servers, redrive_group(group), topics=[topic], client_id="eventkit-redrive"
    )
    sink = KafkaMessageSink(bootstrap_servers, client_id="eventkit-redrive")
    return await redrive(client, sink, timeout=timeout)
