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



async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create one topic outside the product's (the benchmarks' and tests' own), replication factor 1."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()

class CommittedOffsets:
    """The worker group's committed offsets, read over one admin connection kept open between calls (callers
    poll it every second or so)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._admin = None

    async def of(self, topic: Topics, partitions: list[int]) -> dict[int, int]:
        """The committed offset of each partition of ``topic`` (0 when none)."""
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await self._admin.start()
        offsets = await self._admin.list_consumer_group_offsets(
            self.settings.worker_group,
            partitions=[TopicPartition(physical(topic, self.settings), p) for p in partitions])
        return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


def caught_up(committed: dict[int, int], end_offsets: dict[int, int]) -> bool:
    """True once every partition's committed offset reached the end offset we produced up to."""
    return all(committed.get(p, 0) >= end for p, end in end_offsets.items())
