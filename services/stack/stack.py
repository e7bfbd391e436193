"""Starting and stopping the parts a worker needs, embedded where nothing is configured.

``Stack`` brings up, in order: the broker (an embedded Tansu when ``KAFKA_BOOTSTRAP`` is unset and the caller
allows it), ClickHouse (server, or embedded chDB owned by this process and shared through the query gateway;
an attached worker uses the gateway and the broker of the stack running on its data directory instead),
the migrations, the topics, the adapter watcher, the classifier with the registry's active adapter, the Faust
worker and, in embedded mode, the trainer's schedule. ``stop`` takes them down in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from services.wiring import announcer, open_migrated_store, open_registry
from shared.classifier.model import StanceClassifier
from shared.classifier.cache import ProbabilityCache
from shared.errors import StancestreamError
from shared.messages import utcnow
from shared.settings import BrokerStorage, Settings
from shared.store import Store
from shared.store.gateway import QueryGateway
from shared.store.gateway_client import GatewayStore, advertised_stack
from shared.store.sinks import ClickHouseLabelSink, ClickHouseSink
from shared.streaming.broker import EmbeddedBroker
from shared.streaming.hotswap import AdapterWatcher
from shared.streaming.processing import TweetBatchProcessor
from shared.streaming.telemetry import Telemetry
from shared.streaming.topics import CommittedOffsets, Topics, ensure_topics
from shared.streaming.validation import InputLimits
from shared.streaming.worker import WorkerStats, build_worker
from shared.training.registry import AdapterRegistry

log = logging.getLogger(__name__)


class StackError(StancestreamError):
    pass


@dataclass
class Stack:
    settings: Settings
    #: False for ``stancestream worker``: start nothing embedded. With neither ``KAFKA_BOOTSTRAP`` nor
    #: ``CLICKHOUSE_URL`` set, it attaches to the stack running on its data directory (its broker, and its store
    #: through the gateway), which is how several worker processes share one embedded store.
    allow_embedded_broker: bool = True
    run_trainer: bool = False  # the embedded stack also runs the trainer on its schedule
    retry_store_forever: bool = False  # see build_worker: the embedded stack must not stop on store errors
    classifier: StanceClassifier | None = None  # injected by tests; loaded from settings otherwise
    started_at: datetime = field(default_factory=utcnow)
    broker: EmbeddedBroker | None = None
    store: Store | None = None
    gateway: QueryGateway | None = None
    stats: WorkerStats | None = None
    registry: AdapterRegistry | None = None
    watcher: AdapterWatcher | None = None
    trainer_task: asyncio.Task | None = None
    telemetry: Telemetry | None = None
    processor: TweetBatchProcessor | None = None
    _offsets: CommittedOffsets | None = None
    _app: object = None

    async def start(self, status=lambda message: None) -> "Stack":
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        attached = not self.allow_embedded_broker
        broker_epoch = ""
        if settings.kafka_bootstrap is None and attached:
            stack = advertised_stack(settings.data_dir) or {}
            if not stack.get("kafka_bootstrap"):
                raise StackError("KAFKA_BOOTSTRAP is not set and no `stancestream run` is running on "
                                 f"{settings.data_dir}: point the worker at a Kafka cluster")
            settings = self.settings = settings.model_copy(update={"kafka_bootstrap": stack["kafka_bootstrap"]})
            broker_epoch = stack.get("broker_epoch", "")
        if settings.kafka_bootstrap is None:
            status("starting the embedded broker (Tansu)")
            durable = settings.broker_storage is BrokerStorage.durable
            self.broker = EmbeddedBroker(log_file=settings.data_dir / "broker.log",
                                         storage_dir=settings.data_dir / "broker" if durable else None).start()
            settings = self.settings = settings.model_copy(update={"kafka_bootstrap": self.broker.bootstrap})
            broker_epoch = self.broker.epoch
        status("opening ClickHouse")
        # Embedded: owned here and served to other processes by the gateway, or, attached, reached through the
        # gateway of the stack that owns it.
        self.store = await asyncio.to_thread(open_migrated_store, settings, prefer_gateway=attached)
        status("creating topics")
        await ensure_topics(settings)
        # Pin the adapter-event position before reading the registry: no activation can slip in between.
        self.watcher = await AdapterWatcher(settings).start()
        self.registry = await asyncio.to_thread(open_registry, settings, self.store)
        active = await asyncio.to_thread(self.registry.active)
        if active is not None:  # the same check as a hot-swap: only the registry's own directory is loaded
            active = await asyncio.to_thread(self.registry.servable, active.version)
        adapter = Path(active.path) if active else None
        model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
        if self.classifier is None:
            status(f"loading the classifier ({settings.base_model}, adapter {active.version if active else 'none'})")
            self.classifier = await asyncio.get_running_loop().run_in_executor(
                model_thread, partial(StanceClassifier.load, settings, adapter=adapter))
        elif adapter is not None:
            await asyncio.get_running_loop().run_in_executor(model_thread, self.classifier.switch_adapter, adapter)
        status("starting the worker")
        self.telemetry = Telemetry().serve(settings)
        self.telemetry.serving(self.classifier.adapter_version)
        self.processor = TweetBatchProcessor(self.classifier, limits=InputLimits.of(settings),
                                             cache=ProbabilityCache(settings.cache_entries))
        self._app, self.stats = build_worker(settings, self.processor,
                                             ClickHouseSink(self.store), ClickHouseLabelSink(self.store), model_thread,
                                             self.telemetry, retry_forever=self.retry_store_forever,
                                             broker_epoch=broker_epoch)
        await self._app.start()
        self.watcher.follow(self.classifier, model_thread, self.stats, self.telemetry, self.registry)
        if self.run_trainer and settings.trainer_embedded:
            from shared.training.cycle import Trainer, run_schedule

            trainer = Trainer(settings, self.store, self.registry, announcer(settings), telemetry=self.telemetry)
            self.trainer_task = asyncio.create_task(run_schedule(trainer), name="trainer")
        if settings.clickhouse_url is None and not isinstance(self.store, GatewayStore):
            # advertised last: gateway.json also means "the stack is up"
            self.gateway = QueryGateway(self.store, settings.data_dir, settings.gateway_host,
                                        settings.kafka_bootstrap, broker_epoch).start()
        return self

    async def stop(self) -> None:
        if self.trainer_task is not None:
            self.trainer_task.cancel()
            await asyncio.gather(self.trainer_task, return_exceptions=True)
        if self._offsets is not None:
            await self._offsets.close()
        if self.watcher is not None:
            await self.watcher.stop()
        if self._app is not None:
            await self._app.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.telemetry is not None:
            self.telemetry.stop()
        if self.broker is not None:
            self.broker.stop()

    async def committed(self, partitions: list[int], topic: Topics = Topics.raw) -> dict[int, int]:
        """The worker group's committed offset of each partition of ``topic`` (0 when none)."""
        if self._offsets is None:
            self._offsets = CommittedOffsets(self.settings)
        return await self._offsets.of(topic, partitions)
