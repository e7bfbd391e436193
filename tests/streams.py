"""Helpers for tests that run a stack against the session's real Tansu broker and chDB."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaConsumer

from shared.streaming.feed import FeedReport
from shared.streaming.feed_files import FeedRecord
from shared.settings import Settings
from services.stack.stack import Stack
from shared.streaming.topics import Topics, caught_up, physical

TEXTS = ["Los migrantes llegan a la frontera", "Great football match tonight", "Refugees welcome here"]


def stream_settings(broker, store_dir, base: Settings | None = None, **overrides) -> Settings:
    """Settings with topics and a consumer group of their own, on the shared broker and store."""
    tag = uuid.uuid4().hex[:8]
    values = dict(kafka_bootstrap=broker.bootstrap, data_dir=store_dir, topic_prefix=f"t{tag}.",
                  worker_group=f"g{tag}", partitions=2, batch_size=8, adapter=None,
                  metrics_port=0)
    values |= overrides
    return base.model_copy(update=values) if base is not None else Settings(**values)


def tweet_record(i: int, prefix: str = "w") -> FeedRecord:
    return FeedRecord(f"{prefix}{i}".encode(), json.dumps(
        {"id": f"{prefix}{i}", "text": f"{TEXTS[i % 3]} {i}", "created_at": "2026-11-01T10:00:00Z"}).encode())


def tweets(n: int, prefix: str = "w") -> list[FeedRecord]:
    return [tweet_record(i, prefix) for i in range(n)]


async def wait_committed(stack: Stack, report: FeedReport, timeout: float = 60, topic: Topics = Topics.raw) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    committed: dict[int, int] = {}
    while asyncio.get_running_loop().time() < deadline:
        committed = await stack.committed(list(report.end_offsets), topic)
        if caught_up(committed, report.end_offsets):
            return
        assert stack.stats.failure is None, stack.stats.failure
        await asyncio.sleep(0.3)
    raise AssertionError(f"offsets not committed in {timeout}s: {committed} < {report.end_offsets}")


async def until(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def read_topic(settings: Settings, topic: Topics, n: int, timeout: float = 20) -> list[bytes]:
    consumer = AIOKafkaConsumer(physical(topic, settings), bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(values) < n and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return values
