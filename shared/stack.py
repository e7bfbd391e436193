"""Starting and stopping the parts a worker needs, embedded where nothing is configured.

``Stack`` brings up, in order: the broker (an embedded Tansu when ``KAFKA_BOOTSTRAP`` is unset and the caller
allows it), ClickHouse (server, or embedded chDB owned by this process and shared through the query gateway),
the migrations, the topics, the classifier and the Faust worker. ``stop`` takes them down in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import TopicPartition

from shared.broker import EmbeddedBroker
from shared.classifier import StanceClassifier
from shared.messages import utcnow
from shared.pipeline import TweetBatchProcessor
from shared.settings import Settings
from shared.store import Store, open_store
from shared.store.gateway import QueryGateway
from shared.store.migrations import migrate
from shared.store.sink import ClickHouseSink
from shared.streaming import WorkerStats, build_worker
from shared.topics import Topics, ensure_topics, physical

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    settings: Settings
    allow_embedded_broker: bool = True
    classifier: StanceClassifier | None = None  # injected by tests; loaded from settings otherwise
    started_at: datetime = field(default_factory=utcnow)
    broker: EmbeddedBroker | None = None
    store: Store | None = None
    gateway: QueryGateway | None = None
    stats: WorkerStats | None = None
    _app: object = None
    _admin: object = None

    async def start(self, status=lambda message: None) -> "Stack":
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.kafka_bootstrap is None:
            if not self.allow_embedded_broker:
                raise StackError("KAFKA_BOOTSTRAP is not set: point the worker at a Kafka cluster")
            status("starting the embedded broker (Tansu)")
            self.broker = EmbeddedBroker(log_file=settings.data_dir / "broker.log").start()
            settings = self.settings = settings.model_copy(update={"kafka_bootstrap": self.broker.bootstrap})
        status("opening ClickHouse")
        self.store = open_store(settings, prefer_gateway=False)
        await asyncio.to_thread(migrate, self.store)
        status("creating topics")
        await ensure_topics(settings)
        if self.classifier is None:
            status(f"loading the classifier ({settings.base_model})")
            self.classifier = await asyncio.to_thread(StanceClassifier.load, settings)
        status("starting the worker")
        self._app, self.stats = build_worker(
            settings, TweetBatchProcessor(self.classifier), ClickHouseSink(self.store)
        )
        await self._app.start()
        if settings.clickhouse_url is None:  # advertised last: gateway.json also means "the stack is up"
            self.gateway = QueryGateway(self.store, settings.data_dir, settings.gateway_host).start()
        return self

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
        if self._app is not None:
            await self._app.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.broker is not None:
            self.broker.stop()

    async def committed(self, partitions: list[int]) -> dict[int, int]:
        """The worker group's committed offset of each ``tweets.raw`` partition (0 when none)."""
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await self._admin.start()
        topic = physical(Topics.raw, self.settings)
        offsets = await self._admin.list_consumer_group_offsets(
            self.settings.worker_group, partitions=[TopicPartition(topic, p) for p in partitions]
        )
        return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}
