"""The Faust edge of the worker: consume ``tweets.raw`` (and ``tweets.labels``) in micro-batches, process,
write, produce, then ack.

Delivery is at-least-once and an offset is committed only after its batch is durable in ClickHouse:

1. ``noack_take`` hands over a batch of events *without* acking them (plain ``take()`` acks in a ``finally``,
   even when the loop body raised, so a failed insert would still be committed by Faust's commit timer).
2. The batch is classified in an executor thread, written to ClickHouse (retried with backoff), and the
   results and dead letters are produced and their delivery awaited.
3. Only then are the events acked; Faust commits acked offsets on its timer.

If ClickHouse stays down past the retries, or too many messages are invalid, the worker stops with an error
and commits nothing of the batch: a restart re-reads it, and ReplacingMergeTree absorbs the repeat.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import faust

from shared.settings import Settings
from shared.streaming.faults import fault_point
from shared.streaming.processing import (
    ClassificationSink, InboundMessage, InvalidRatioGuard, LabelBatchProcessor, LabelSink, TweetBatchProcessor,
    origin_of,
)
from shared.streaming.telemetry import Telemetry
from shared.streaming.topics import Topics, physical
from shared.streaming.validation import InputLimits

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    batches: int = 0
    tweets: int = 0
    dead_letters: int = 0
    labels: int = 0
    adapter_switches: int = 0
    adapter_failures: int = 0
    conflicting_ids: int = 0  # dead-lettered: their id was already taken by another text
    store_error: str | None = None  # the last failed ClickHouse write, until one succeeds
    failure: BaseException | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


def faust_app(settings: Settings) -> faust.App:
    """A Faust app configured for what works on both Tansu and Kafka (see ENVIRONMENT.md)."""
    return faust.App(
        settings.worker_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        processing_guarantee="at_least_once",
        broker_session_timeout=10,  # Tansu delays each group join by half of it
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_enabled=False,
        # Don't wait for unacked messages on stop: after a failed write they stay unacked on purpose.
        stream_wait_empty=False,
        datadir=str(settings.data_dir / "faust"),  # Faust's local state; by default it lands in the cwd
    )


def build_worker(
    settings: Settings, processor: TweetBatchProcessor, sink: ClassificationSink, label_sink: LabelSink,
    model_thread: ThreadPoolExecutor, telemetry: Telemetry, retry_forever: bool = False, broker_epoch: str = "",
) -> tuple[faust.App, WorkerStats]:
    """The worker's Faust app: the ``classify`` agent and the ``labels`` agent. The classifier runs only in
    ``model_thread``, which also performs adapter switches, so a switch always falls between two batches.

    ``retry_forever``: never give up on a ClickHouse write. The embedded stack wants that: stopping would take
    its in-memory broker, and every message it holds, down with it. A production worker stops instead and
    lets its supervisor restart it, the batch still uncommitted in Kafka.

    ``broker_epoch``: set for an in-memory broker, whose offsets start again at 0 after a restart. A message
    without the feeder's origin header is then known by its coordinates *in this epoch*, so that its dead
    letter cannot replace one from an earlier run."""
    app = faust_app(settings)

    def topic(name: Topics) -> faust.TopicT:
        return app.topic(physical(name, settings), value_serializer="raw", key_serializer="raw")

    raw, classified, dlq, labels = topic(Topics.raw), topic(Topics.classified), topic(Topics.dlq), topic(Topics.labels)
    stats = WorkerStats()
    guard = InvalidRatioGuard(settings.dlq_max_invalid_ratio)
    label_processor = LabelBatchProcessor(InputLimits.of(settings))

    async def write_durably(write: Callable[[], object]) -> None:
        """``write()`` in a thread, retried with backoff: ``sink_retries`` times, or forever."""
        delay = 0.5
        for attempt in itertools.count(1):
            try:
                await asyncio.to_thread(write)
                stats.store_error = None
                return
            except Exception as exc:
                stats.store_error = str(exc)
                if attempt > settings.sink_retries and not retry_forever:
                    raise
                log.warning("ClickHouse write failed (attempt %d%s), retrying in %.1fs: %s", attempt,
                            "" if retry_forever else f"/{settings.sink_retries + 1}", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def publish(classifications: list, dead_letters: list) -> None:
        deliveries = []
        for c in classifications:
            deliveries.append(await classified.send(key=c.tweet_id.encode(), value=c.model_dump_json().encode()))
            fault_point("during_publish")
        for d in dead_letters:
            deliveries.append(await dlq.send(key=None, value=d.model_dump_json().encode()))
        await asyncio.gather(*deliveries)

    def ephemeral_origin(message) -> str:
        return f"kafka@{broker_epoch}:{message.topic}:{message.partition}:{message.offset}" if broker_epoch else ""

    async def durable_batches(stream, handle) -> None:
        """Hand each micro-batch to ``handle``; ack its events only once ``handle`` returned."""
        # ``noack()`` first: ``noack_take`` restores the stream's own ack setting when its generator is closed
        # (on shutdown, or if the loop body raised), after which Faust acks every message still flowing
        # through the stream, processed or not. On a no-ack stream there is nothing to restore.
        batches = stream.noack()
        async for events in batches.noack_take(settings.batch_size, within=settings.batch_max_wait_s):
            messages = [
                InboundMessage(e.message.value, e.message.topic, e.message.partition, e.message.offset,
                               e.message.timestamp and int(e.message.timestamp * 1000),
                               origin_of(e.message.headers) or ephemeral_origin(e.message))
                for e in events
            ]
            try:
                await handle(messages)
            except Exception as exc:
                # Neither raise nor continue: Faust would restart the agent on the *next* batch and, with no
                # commit yet, commit past this one. Park with the batch unacked until the owner sees
                # ``stats.failure`` and stops the app; a restart re-reads the batch.
                log.error("worker stopping, batch left uncommitted: %s", exc)
                stats.failure = exc
                stats.stopped.set()
                await asyncio.Event().wait()
            fault_point("before_ack")
            for event in events:  # durable and published: now the offsets may be committed
                await batches.ack(event)

    async def stored_texts(ids: list[str]) -> dict[str, str]:
        """The duplicate-id check's lookup of the texts already stored under ``ids``; retried like a write."""
        found: dict[str, str] = {}
        lookup = getattr(sink, "stored_text_digests", None)
        if ids and lookup is not None:
            await write_durably(lambda: found.update(lookup(ids)))
        return found

    async def classify_batch(messages: list[InboundMessage]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        parsed = await loop.run_in_executor(model_thread, processor.parse, messages)
        result = await loop.run_in_executor(model_thread, processor.classify_parsed, parsed,
                                            await stored_texts(parsed.ids))
        guard.check(result)
        fault_point("before_insert")
        await write_durably(lambda: sink.write(result.tweets, result.classifications, result.dead_letters))
        fault_point("after_insert")
        await publish(result.classifications, result.dead_letters)
        stats.batches += 1
        stats.tweets += len(result.classifications)
        stats.dead_letters += len(result.dead_letters)
        stats.conflicting_ids += result.conflicting_ids
        telemetry.conflicting_ids.inc(result.conflicting_ids)
        telemetry.batches.inc()
        telemetry.batch_seconds.observe(time.perf_counter() - started)
        telemetry.tweets.inc(len(result.classifications))
        telemetry.dead_letters.labels(Topics.raw.value).inc(len(result.dead_letters))
        written = time.time()
        for message in messages:
            if message.timestamp_ms:
                telemetry.tweet_latency.observe(max(0.0, written - message.timestamp_ms / 1000))

    async def ingest_labels(messages: list[InboundMessage]) -> None:
        batch = label_processor.process(messages)
        await write_durably(lambda: label_sink.write(batch.labels, batch.dead_letters))
        await publish([], batch.dead_letters)
        stats.labels += len(batch.labels)
        stats.dead_letters += len(batch.dead_letters)
        telemetry.labels.inc(len(batch.labels))
        telemetry.dead_letters.labels(Topics.labels.value).inc(len(batch.dead_letters))

    @app.agent(raw, name="classify")
    async def classify(stream):
        await durable_batches(stream, classify_batch)

    @app.agent(labels, name="labels")
    async def label_agent(stream):
        await durable_batches(stream, ingest_labels)

    return app, stats
