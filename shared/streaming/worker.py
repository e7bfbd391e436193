"""The Faust edge of the worker: consume ``tweets.raw`` (and ``tweets.labels``) in micro-batches, process,
write, produce, then ack — as a pipeline, so that the model never waits for I/O.

Delivery is at-least-once and an offset is committed only after its batch is durable in ClickHouse:

1. The stream is iterated *without* acking (``noack()``; Faust's plain ``take()`` acks in a ``finally``, even
   when the loop body raised, so a failed insert would still be committed by Faust's commit timer).
2. Events queue up as they arrive while the model is busy and go as one batch of up to what the model classifies in
   ``batch_target_s`` at its measured rate (``BatchLimit``, at most ``max_batch_size``): a backlog makes batches
   large enough to pack well, a light load small and prompt ones, and no batch holds its tweets for long. Near
   capacity a call waits (``batch_fill_s`` at most) for ``batch_fill_size`` tweets: small calls cost more per tweet.
3. A batch is classified in the model thread while the batches before it (at most ``in_flight_batches``) are
   written to ClickHouse (retried with backoff) and their results and dead letters produced and delivered.
4. Batches are written strictly in order, and a batch's events are acked only after its own write and
   delivery; Faust commits acked offsets on its timer.

If ClickHouse stays down past the retries, or too many messages are invalid, the worker stops with an error
and commits nothing of that batch or any after it: a restart re-reads them, and ReplacingMergeTree absorbs the
repeat.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from shared.settings import Settings
from shared.streaming.faults import fault_point
from shared.streaming.fetch_wait import FetchWait, behind
from shared.streaming.processing import (
    BatchResult, ClassificationSink, InboundMessage, InvalidRatioGuard, LabelBatchProcessor, LabelSink, TweetBatchProcessor,
    origin_of, text_digest,
)
from shared.streaming.telemetry import Telemetry, partition_lag
from shared.streaming.topics import Topics, physical
from shared.streaming.validation import InputLimits

log = logging.getLogger(__name__)

#: Seconds between two updates of the consumer-lag gauge (Prometheus scrapes every 15 s).
LAG_INTERVAL_S = 2.0


@dataclass
class WorkerStats:
    batches: int = 0
    tweets: int = 0
    dead_letters: int = 0
    labels: int = 0
    adapter_switches: int = 0
    adapter_failures: int = 0
    conflicting_ids: int = 0  # dead-lettered: their id was already taken by another text
    copies: int = 0  # classified by reusing an identical text's probabilities
    retrying: str | None = None  # what is failing and being retried ("ClickHouse write: ..."), until it succeeds
    failure: BaseException | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


def faust_app(settings: Settings) -> faust.App:
    """A Faust app configured for what works on both Tansu and Kafka (see ENVIRONMENT.md)."""
    app = faust.App(
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
    app.transport.Consumer = _prompt_fetch_consumer(settings.fetch_max_wait_ms)
    return app


def _prompt_fetch_consumer(fetch_max_wait_ms: int) -> type:
    """Faust's consumer with another fetch wait. Faust fixes aiokafka's ``fetch_max_wait_ms`` at 1500, and Tansu
    answers a fetch only when that wait is over, not when data arrives: a 0.6 s median delay on every tweet at
    light load (docs/benchmarks.md). A short wait costs a few idle fetches per second; it grows while a backlog on
    durable storage trickles in (``shared.streaming.fetch_wait``)."""

    class PromptFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            self._fetch_wait = FetchWait(fetch_max_wait_ms)
            return consumer

        async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
            records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                                   max_records=max_records)
            # aiokafka's fetcher reads the wait anew for every fetch request it builds.
            consumer._fetcher._fetch_max_wait_ms = self._fetch_wait.observe(
                received=sum(map(len, records.values())), behind=behind(consumer, active_partitions or ()))
            return records

    class PromptFetchConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):
            return PromptFetchThread(self, loop=self.loop, beacon=self.beacon)

    return PromptFetchConsumer


class _Recent:
    """Amounts added over the last ``span_s`` seconds."""

    def __init__(self, span_s: float, clock: Callable[[], float]):
        self.span_s, self._clock = span_s, clock
        self._items: deque[tuple[float, float]] = deque()

    def add(self, amount: float) -> None:
        now = self._clock()
        self._items.append((now, amount))
        while self._items[0][0] <= now - self.span_s:
            self._items.popleft()

    def total(self) -> float:
        now = self._clock()
        return sum(amount for t, amount in self._items if t > now - self.span_s)


class BatchLimit:
    """How many tweets go into one model call.

    At most what the model classifies in ``target_s`` at its measured rate, between ``smallest`` (the cap until the
    rate is known) and ``largest``. Tweets are packed into levelled rows, so a batch of a few seconds costs little
    more per tweet than a large one (docs/benchmarks.md); near capacity, batches of 128 (20-30 s on 2 cores)
    delivered results in bursts and held every tweet in them that long (docs/benchmarks.md).

    And, near capacity, at least ``fill_size`` if they come within ``fill_s``: a call of 16 tweets costs 1.25× per
    tweet what one of 160 does (docs/benchmarks.md), so a saturated worker that classified whatever queued during
    its last call would sit where that dearer rate equals the offer. "Near capacity" is tweets arriving at
    ``fill_load`` of the model's rate on full calls (``full_rate``, calls of at least that size) or more over the last
    ``ARRIVALS_S``: under a lighter load no call ever waits. Not the rate of the latest calls: at a light load those
    hold a few tweets each and run at a fraction of capacity, and the fill would then start at a quarter of it.
    But a feed that never came in a burst makes no full call to time: there, once small calls keep the model busy
    ``SATURATED`` of the last ``ARRIVALS_S``, their rate stands in for ``full_rate`` (lower, so the fill starts a
    little early) until a full call is timed. Measured: 1-3 tweet calls ran at 6.3 tweets/s where calls of ≈ 11
    ran at 7.8-8.0 (docs/benchmarks.md, "A live feed that never came in a burst").

    Optionally only where the model's time pays for it: with ``fill_gain`` the fill waits only while full calls run
    at least that many times the rate of the smaller calls made near capacity (``short_rate``). On an AVX2 EPYC
    serving fp32 a call's model time per tweet is flat, and there the gate halves the latency below capacity, but
    the fuller calls still paid in the stack (fewer inserts, publishes and commits on two cores): its capacity
    was one grid step lower, so the gate is off by default (docs/benchmarks.md, "The gate again")."""

    SMOOTHING = 0.3  # weight of the newest batch in the rate's moving average
    ARRIVALS_S = 5.0
    SATURATED = 0.9  # share of the last ARRIVALS_S in model calls: calls back to back, each taking what queued

    def __init__(self, smallest: int, largest: int, target_s: float, fill_size: int = 0, fill_s: float = 0.0,
                 fill_load: float = 0.6, fill_gain: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.smallest, self.largest, self.target_s = smallest, max(smallest, largest), target_s
        self.fill_size, self.fill_s, self.fill_load, self.fill_gain = fill_size, fill_s, fill_load, fill_gain
        self.rate: float | None = None  # tweets per second of model time
        self.full_rate: float | None = None  # the same, over calls of at least the fill size
        self.short_rate: float | None = None  # the same, over smaller calls made near capacity (with fill_gain)
        self._arrivals = _Recent(self.ARRIVALS_S, clock)  # tweets arrived
        self._calls = _Recent(self.ARRIVALS_S, clock)  # model seconds of the calls that ended

    def observe(self, tweets: int, seconds: float) -> None:
        if tweets and seconds > 0:
            full = tweets >= min(self.fill_size, self.most())
            rate = tweets / seconds
            self.rate = self._smoothed(self.rate, rate)
            self._calls.add(seconds)
            if full:
                self.full_rate = self._smoothed(self.full_rate, rate)
            elif self.full_rate is None and self.fill_s and self._busy_share() >= self.SATURATED:
                self.full_rate = self.rate
            elif self.fill_gain and self._near_capacity():  # only the gate reads it
                self.short_rate = self._smoothed(self.short_rate, rate)

    def _busy_share(self) -> float:
        return self._calls.total() / self.ARRIVALS_S

    def _smoothed(self, average: float | None, rate: float) -> float:
        return rate if average is None else self.SMOOTHING * rate + (1 - self.SMOOTHING) * average

    def arrived(self, tweets: int) -> None:
        self._arrivals.add(tweets)

    def most(self) -> int:
        if self.rate is None:
            return self.smallest
        return min(self.largest, max(self.smallest, round(self.rate * self.target_s)))

    def fill(self, queued: int) -> tuple[int, float] | None:
        """``(tweets, seconds)``: wait up to that long for that many to queue before the next call; None: don't."""
        size = min(self.fill_size, self.most())
        if queued >= size or not self._near_capacity():
            return None
        if self.short_rate is not None and self.full_rate < self.fill_gain * self.short_rate:
            return None  # fuller calls save no model time per tweet here
        return size, self.fill_s

    def _near_capacity(self) -> bool:
        if not self.fill_s or self.full_rate is None:
            return False
        arriving = self._arrivals.total() / self.ARRIVALS_S
        return arriving >= self.fill_load * self.full_rate


class _Backlog:
    """Events waiting for the model, at most ``limit``; ``next_batch`` hands over the oldest, up to a batch."""

    def __init__(self, limit: int):
        self.limit = limit
        self._events: deque = deque()
        self._changed = asyncio.Condition()

    async def put(self, event) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._events) < self.limit)
            self._events.append(event)
            self._changed.notify_all()

    async def fill(self, size: int, timeout: float) -> None:
        """Return once ``size`` events are queued, or after ``timeout`` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: len(self._events) >= size), timeout)
            except asyncio.TimeoutError:
                pass

    @property
    def size(self) -> int:
        return len(self._events)

    async def next_batch(self, most: int) -> list:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._events))
            batch = [self._events.popleft() for _ in range(min(most, len(self._events)))]
            self._changed.notify_all()
            return batch


class _UnwrittenTexts:
    """The duplicate-id check's view of batches classified but not yet written: id -> digest of their text."""

    def __init__(self) -> None:
        self._digest: dict[str, str] = {}
        self._batches: Counter[str] = Counter()

    def add(self, tweets) -> None:
        for tweet in tweets:
            self._digest.setdefault(tweet.id, text_digest(tweet.text))
            self._batches[tweet.id] += 1

    def written(self, tweets) -> None:
        for tweet in tweets:
            self._batches[tweet.id] -= 1
            if self._batches[tweet.id] <= 0:
                del self._batches[tweet.id], self._digest[tweet.id]

    def lookup(self, ids: list[str]) -> dict[str, str]:
        return {i: self._digest[i] for i in ids if i in self._digest}


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

    @app.on_partitions_assigned.connect
    async def count_assigned(app, assigned, **kwargs) -> None:  # Faust passes the whole new assignment
        telemetry.assigned_partitions.set(sum(1 for tp in assigned if tp.topic == raw.get_topic_name()))

    @app.on_partitions_revoked.connect
    async def count_revoked(app, revoked, **kwargs) -> None:  # a rebalance began: nothing is held until it ends
        telemetry.assigned_partitions.set(0)
    stats = WorkerStats()
    guard = InvalidRatioGuard(settings.dlq_max_invalid_ratio)
    label_processor = LabelBatchProcessor(InputLimits.of(settings))

    async def persistently(action: Callable[[], Awaitable[None]], what: str) -> None:
        """``await action()``, retried with backoff: ``sink_retries`` times, or forever. Used for the ClickHouse
        write and for the publish after it: a broker can fail a produce it would accept a moment later (a leader
        moving, a storage hiccup), and stopping over it would cost the embedded stack its broker."""
        delay = 0.5
        for attempt in itertools.count(1):
            try:
                await action()
                stats.retrying = None
                return
            except Exception as exc:
                stats.retrying = f"{what}: {exc}"
                if attempt > settings.sink_retries and not retry_forever:
                    raise
                log.warning("%s failed (attempt %d%s), retrying in %.1fs: %s", what, attempt,
                            "" if retry_forever else f"/{settings.sink_retries + 1}", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def write_durably(write: Callable[[], object]) -> None:
        await persistently(lambda: asyncio.to_thread(write), "ClickHouse write")

    async def publish_once(classifications: list, dead_letters: list) -> None:
        deliveries = []
        for c in classifications:
            deliveries.append(await classified.send(key=c.tweet_id.encode(), value=c.model_dump_json().encode()))
            fault_point("during_publish")
        for d in dead_letters:
            deliveries.append(await dlq.send(key=None, value=d.model_dump_json().encode()))
        await asyncio.gather(*deliveries)

    async def publish(classifications: list, dead_letters: list) -> None:
        # A retry may repeat messages the failed attempt delivered: the output topics are at-least-once, like
        # a redelivery after a restart; ClickHouse, already written, is what counts exactly once.
        await persistently(lambda: publish_once(classifications, dead_letters), "publish to Kafka")

    def ephemeral_origin(message) -> str:
        return f"kafka@{broker_epoch}:{message.topic}:{message.partition}:{message.offset}" if broker_epoch else ""

    def inbound(events) -> list[InboundMessage]:
        return [InboundMessage(e.message.value, e.message.topic, e.message.partition, e.message.offset,
                               e.message.timestamp and int(e.message.timestamp * 1000),
                               origin_of(e.message.headers) or ephemeral_origin(e.message))
                for e in events]

    async def durable_batches(stream, prepare: Callable[[list[InboundMessage]], Awaitable[object]],
                              commit: Callable[[list[InboundMessage], object], Awaitable[None]],
                              limit: BatchLimit | None = None) -> None:
        """Queue events as they arrive and hand what queued to the model in batches that ``limit`` allows (default:
        at most ``max_batch_size``, never waiting to fill); ``prepare`` them one at a time, ``commit`` (write and
        publish) them one at a time in the same order, concurrently with the next ``prepare``; ack a batch's events
        only once its ``commit`` returned. A failure parks the pipeline: that batch and every later one stay
        unacked."""
        # A no-ack stream: an event is acked only by ``events_in.ack`` below, once its batch is written and
        # published.
        events_in = stream.noack()
        backlog = _Backlog(settings.max_batch_size)
        prepared: asyncio.Queue = asyncio.Queue(maxsize=settings.in_flight_batches)

        async def stop_here(exc: BaseException) -> None:
            # Neither raise nor continue: Faust would restart the agent on the *next* batch and, with no commit
            # yet, commit past this one. Park with the batch unacked until the owner sees ``stats.failure`` and
            # stops the app; a restart re-reads the batch.
            log.error("worker stopping, batch left uncommitted: %s", exc)
            stats.failure = exc
            stats.stopped.set()
            await asyncio.Event().wait()

        async def preparing() -> None:
            while True:
                wait = limit and limit.fill(backlog.size)
                if wait:
                    await backlog.fill(*wait)
                events = await backlog.next_batch(limit.most() if limit else settings.max_batch_size)
                try:
                    messages = inbound(events)
                    ready = (events, messages, await prepare(messages))
                except Exception as exc:
                    await stop_here(exc)
                await prepared.put(ready)

        async def committing() -> None:
            while True:
                events, messages, result = await prepared.get()
                try:
                    await commit(messages, result)
                    fault_point("before_ack")
                    for event in events:  # durable and published: now the offsets may be committed
                        await events_in.ack(event)
                except Exception as exc:
                    await stop_here(exc)

        stages = [asyncio.create_task(preparing(), name="prepare"), asyncio.create_task(committing(), name="commit")]
        try:
            # Each event goes to the backlog as it arrives: no take timer wakes the loop while nothing comes (20
            # times a second per agent, CPU the model's threads lose on a small machine), and a tweet waits for
            # the model, not for a take to fill.
            async for event in events_in.events():
                await backlog.put(event)
                if limit:
                    limit.arrived(1)
        finally:
            for stage in stages:
                stage.cancel()
            await asyncio.gather(*stages, return_exceptions=True)

    unwritten = _UnwrittenTexts()

    async def stored_texts(ids: list[str]) -> dict[str, str]:
        """The duplicate-id check's lookup of the texts already stored (or on their way) under ``ids``; retried
        like a write."""
        found: dict[str, str] = unwritten.lookup(ids)
        lookup = getattr(sink, "stored_text_digests", None)
        if ids and lookup is not None:
            await write_durably(lambda: found.update(lookup(ids)))
        return found

    batch_limit = BatchLimit(settings.batch_size, settings.max_batch_size, settings.batch_target_s,
                             settings.batch_fill_size, settings.batch_fill_s, settings.batch_fill_load,
                             settings.batch_fill_gain)

    async def classify(messages: list[InboundMessage]) -> tuple[BatchResult, float]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        parsed = await loop.run_in_executor(model_thread, processor.parse, messages)
        stored = await stored_texts(parsed.ids)
        model_started = time.perf_counter()
        result = await loop.run_in_executor(model_thread, processor.classify_parsed, parsed, stored)
        batch_limit.observe(len(messages), time.perf_counter() - model_started)
        guard.check(result)
        unwritten.add(result.tweets)
        return result, started

    async def store_classified(messages: list[InboundMessage], prepared: tuple[BatchResult, float]) -> None:
        result, started = prepared
        fault_point("before_insert")
        await write_durably(lambda: sink.write(result.tweets, result.classifications, result.dead_letters))
        unwritten.written(result.tweets)
        fault_point("after_insert")
        await publish(result.classifications, result.dead_letters)
        stats.batches += 1
        stats.tweets += len(result.classifications)
        stats.dead_letters += len(result.dead_letters)
        stats.conflicting_ids += result.conflicting_ids
        stats.copies += result.copies
        telemetry.conflicting_ids.inc(result.conflicting_ids)
        telemetry.cache_hits.inc(result.copies)
        telemetry.batches.inc()
        telemetry.batch_size.observe(len(messages))
        telemetry.batch_seconds.observe(time.perf_counter() - started)
        telemetry.tweets.inc(len(result.classifications))
        telemetry.dead_letters.labels(Topics.raw.value).inc(len(result.dead_letters))
        written = time.time()
        for message in messages:
            if message.timestamp_ms:
                telemetry.tweet_latency.observe(max(0.0, written - message.timestamp_ms / 1000))

    async def check_labels(messages: list[InboundMessage]):
        return label_processor.process(messages)

    async def store_labels(messages: list[InboundMessage], batch) -> None:
        await write_durably(lambda: label_sink.write(batch.labels, batch.dead_letters))
        await publish([], batch.dead_letters)
        stats.labels += len(batch.labels)
        stats.dead_letters += len(batch.dead_letters)
        telemetry.labels.inc(len(batch.labels))
        telemetry.dead_letters.labels(Topics.labels.value).inc(len(batch.dead_letters))

    consumed = {physical(t, settings): t.value for t in (Topics.raw, Topics.labels)}  # reported by logical name

    @app.timer(LAG_INTERVAL_S)
    async def report_lag() -> None:
        telemetry.lag(partition_lag(app.consumer, consumed))

    @app.agent(raw, name="classify")
    async def classify_agent(stream):
        await durable_batches(stream, classify, store_classified, batch_limit)

    @app.agent(labels, name="labels")
    async def label_agent(stream):
        await durable_batches(stream, check_labels, store_labels)

    return app, stats
