"""Logical topic names, mapped to physical names in this one place, and their creation at start-up."""

from __future__ import annotations

import logging
from enum import Enum

from shared.settings import Settings

log = logging.getLogger(__name__)


class Topics(str, Enum):
    raw = "tweets.raw"
    classified = "tweets.classified"
    dlq = "tweets.dlq"
    labels = "tweets.labels"
    adapter_events = "adapters.events"  # one partition: every worker reads every event, in order


def physical(topic: Topics, settings: Settings) -> str:
    return f"{settings.topic_prefix}{topic.value}"


async def ensure_topics(settings: Settings, topics: tuple[Topics, ...] = tuple(Topics)) -> None:
    """Create missing topics with the configured partition count (auto-created ones would get the broker's)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if physical(t, settings) not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(physical(t, settings), num_partitions=1 if t is Topics.adapter_events else settings.partitions,
                          replication_factor=settings.replication_factor) for t in missing]
            )
            log.info("created topics %s", [physical(t, settings) for t in missing])
    finally:
        await admin.close()


async def committed_offsets(settings: Settings, topic: Topics, partitions: list[int]) -> dict[int, int]:
    """The worker group's committed offset of each partition of ``topic`` (0 when none)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            settings.worker_group, partitions=[TopicPartition(physical(topic, settings), p) for p in partitions]
        )
    finally:
        await admin.close()
    return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}
