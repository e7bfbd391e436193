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


def physical(topic: Topics, settings: Settings) -> str:
    return f"{settings.topic_prefix}{topic.value}"


async def ensure_topics(settings: Settings, topics: tuple[Topics, ...] = tuple(Topics)) -> None:
    """Create missing topics with the configured partition count (auto-created ones would get the broker's)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [physical(t, settings) for t in topics]
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(n, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
                 for n in missing]
            )
            log.info("created topics %s with %d partitions", missing, settings.partitions)
    finally:
        await admin.close()
