"""Hot-swapping adapters in running workers through the ``adapters.events`` topic.

Every worker must see every event, so the watcher reads the one-partition topic without a consumer group.
Its position is pinned to the end *before* the worker reads the active version from the registry: an event
published in between is still seen, and one published before is already reflected in the registry.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from shared.classifier.model import StanceClassifier
from shared.errors import StancestreamError
from shared.messages import AdapterEvent
from shared.settings import Settings
from shared.streaming.topics import Topics, physical
from shared.streaming.validation import InvalidMessage, parse_message

log = logging.getLogger(__name__)


class ServedAdapter(Protocol):
    path: str


class AdapterSource(Protocol):
    """Where a worker learns which directory to load for an announced version (``AdapterRegistry``)."""

    def servable(self, version: str, announced_path: str | None = None) -> ServedAdapter:
        """The version's record if a worker may load it; a ``StancestreamError`` that says why not otherwise."""
        ...


class AdapterWatcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._consumer = None
        self._task: asyncio.Task | None = None

    async def start(self) -> "AdapterWatcher":
        """Connect and pin the position at the topic's current end."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                          enable_auto_commit=False)
        await self._consumer.start()
        partition = TopicPartition(physical(Topics.adapter_events, self.settings), 0)
        self._consumer.assign([partition])
        await self._consumer.seek_to_end(partition)
        await self._consumer.position(partition)
        return self

    def follow(self, classifier: StanceClassifier, model_thread: ThreadPoolExecutor, stats, telemetry,
               registry: AdapterSource) -> None:
        """From now on, switch ``classifier`` to each announced version, in ``model_thread``."""
        self._task = asyncio.create_task(self._follow(classifier, model_thread, stats, telemetry, registry),
                                         name="adapter-watcher")

    async def _follow(self, classifier: StanceClassifier, model_thread: ThreadPoolExecutor, stats, telemetry,
                      registry: AdapterSource) -> None:
        async for record in self._consumer:
            try:  # the same bounds as any message: size, depth, encoding
                event = parse_message(record.value, AdapterEvent, "adapter event")
            except InvalidMessage as exc:
                log.error("ignoring a malformed adapter event at offset %d: %s", record.offset, exc)
                continue
            await apply_event(event, classifier, model_thread, stats, telemetry, registry)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


async def apply_event(event: AdapterEvent, classifier: StanceClassifier, model_thread: ThreadPoolExecutor, stats,
                      telemetry, registry: AdapterSource) -> None:
    """Switch to the announced version, or refuse and keep serving the current one.

    Anyone who can produce to the topic can send an event, so the event only names a version: what is loaded
    is the registry's own directory of it (``AdapterRegistry.servable``), never a path the event brings."""
    try:
        record = await asyncio.to_thread(registry.servable, event.version, event.path)
        await asyncio.get_running_loop().run_in_executor(model_thread, classifier.switch_adapter, Path(record.path))
    except StancestreamError as exc:  # a ClassifierError, RegistryError or StoreError: keep serving
        stats.adapter_failures += 1
        telemetry.adapter_switches.labels("refused").inc()
        log.error("refused adapter %s, still serving %s: %s", event.version, classifier.adapter_version, exc)
        return
    stats.adapter_switches += 1
    telemetry.adapter_switches.labels("switched").inc()
    telemetry.serving(classifier.adapter_version)
    log.warning("now serving adapter %s (%s)", classifier.adapter_version, event.action.value)


async def publish_adapter_event(settings: Settings, event: AdapterEvent) -> None:
    """Announce an activation to every running worker; returns once the broker has it."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(physical(Topics.adapter_events, settings), event.model_dump_json().encode(),
                                     key=event.version.encode())
    finally:
        await producer.stop()
