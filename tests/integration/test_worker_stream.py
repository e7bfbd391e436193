"""The worker against a real Tansu broker and real chDB: results, dead letters, and commit-after-write."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.streaming.feed import FeedReport, produce_feed
from shared.streaming.feed_files import FeedRecord
from shared.messages import Classification, DeadLetter
from services.stack.stack import Stack
from shared.streaming.topics import Topics, physical
from streams import read_topic, stream_settings, tweets, wait_committed

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.model]


def test_stream_classifies_writes_and_dead_letters(broker, clean_store, store_dir, tiny_classifier):
    settings = stream_settings(broker, store_dir)
    invalid = [b"not json", json.dumps({"id": "x1", "created_at": "2026-11-01T00:00:00Z"}).encode(),
               json.dumps(["an", "array"]).encode()]

    async def scenario():
        stack = await Stack(settings, classifier=tiny_classifier).start()
        try:
            records = tweets(40) + [FeedRecord(None, value) for value in invalid]
            report = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(records),
                                        FeedReport())
            await wait_committed(stack, report)
            classified = await read_topic(settings, Topics.classified, 40)
            dead = await read_topic(settings, Topics.dlq, 3)
        finally:
            await stack.stop()
        return classified, dead

    classified, dead = asyncio.run(scenario())
    rows = clean_store.query("SELECT count(), uniqExact(tweet_id) FROM classifications FINAL").rows[0]
    assert rows == (40, 40)
    assert clean_store.query("SELECT count() FROM tweets FINAL").scalar() == 40
    sums = clean_store.query("SELECT min(p_pro+p_anti+p_neutral+p_unrelated), max(p_pro+p_anti+p_neutral+p_unrelated)"
                             " FROM classifications").rows[0]
    assert sums[0] == pytest.approx(1, abs=1e-3) and sums[1] == pytest.approx(1, abs=1e-3)
    assert sorted(Classification.model_validate_json(v).tweet_id for v in classified) == sorted(
        f"w{i}" for i in range(40))
    letters = [DeadLetter.model_validate_json(v) for v in dead]
    assert sorted(d.payload.encode() for d in letters) == sorted(invalid)
    assert all(d.reason for d in letters)
    stored = clean_store.query("SELECT payload, reason FROM dead_letters FINAL").rows
    assert sorted(p.encode() for p, _ in stored) == sorted(invalid)


async def _run_until_the_worker_stops(stack: Stack, settings, records, clean_store):
    """Feed ``records`` to a started ``stack`` whose store write will fail; once the worker stopped, and longer than
    the commit interval (a wrongly acked batch would commit), read the committed offsets; stop the stack and put
    the ``classifications`` table back (the caller, or a fault, renamed it away)."""
    try:
        try:
            report = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(records),
                                        FeedReport())
            await asyncio.wait_for(stack.stats.stopped.wait(), timeout=60)
            await asyncio.sleep(2.5)
            return report, await stack.committed(list(report.end_offsets))
        finally:
            await stack.stop()
    finally:
        clean_store.command("RENAME TABLE classifications_away TO classifications")


def test_failed_insert_is_not_committed_and_is_redelivered(broker, clean_store, store_dir, tiny_classifier):
    """A ClickHouse write that fails (a real error: the table is gone) must leave the batch uncommitted."""
    settings = stream_settings(broker, store_dir, sink_retries=1)

    async def scenario():
        stack = await Stack(settings, classifier=tiny_classifier).start()  # migrate would re-create the table
        clean_store.command("RENAME TABLE classifications TO classifications_away")
        report, committed = await _run_until_the_worker_stops(stack, settings, tweets(20, "f"), clean_store)
        assert stack.stats.failure is not None and "classifications" in str(stack.stats.failure)
        assert stack.stats.batches == 0
        assert all(offset == 0 for offset in committed.values()), committed

        restarted = await Stack(settings, classifier=tiny_classifier).start()  # same group: resumes
        try:
            await wait_committed(restarted, report)
        finally:
            await restarted.stop()

    asyncio.run(scenario())
    assert clean_store.query("SELECT count(), uniqExact(tweet_id) FROM classifications FINAL").rows[0] == (20, 20)


def test_a_failed_write_leaves_its_batch_and_every_later_one_unacked(broker, clean_store, store_dir, tiny_classifier,
                                                                      monkeypatch):
    """Pipelined: later batches are classified while a batch is written, yet when batch 2's write fails (for real:
    its table was renamed away after batch 1's write), exactly batch 1 is committed — nothing of batch 2 or after."""
    from shared.store.sinks import ClickHouseSink

    settings = stream_settings(broker, store_dir, sink_retries=1, batch_size=4, max_batch_size=4, partitions=1,
                               in_flight_batches=2)
    written: list[list[str]] = []
    real_write = ClickHouseSink.write

    def first_write_then_lose_the_table(self, tweets, classifications, dead_letters):
        real_write(self, tweets, classifications, dead_letters)
        written.append([t.id for t in tweets])
        if len(written) == 1:
            clean_store.command("RENAME TABLE classifications TO classifications_away")

    monkeypatch.setattr(ClickHouseSink, "write", first_write_then_lose_the_table)

    async def scenario():
        stack = await Stack(settings, classifier=tiny_classifier).start()
        _, committed = await _run_until_the_worker_stops(stack, settings, tweets(24, "p"), clean_store)
        return stack, committed

    stack, committed = asyncio.run(scenario())
    assert "classifications" in str(stack.stats.failure)
    assert stack.stats.batches == 1 and len(written) == 1
    assert committed == {0: len(written[0])}, (committed, written)  # one partition: offsets 0.. are batch 1


def test_copies_reuse_probabilities_get_their_own_rows_and_are_counted(broker, clean_store, store_dir,
                                                                       tiny_classifier):
    settings = stream_settings(broker, store_dir)
    originals = [FeedRecord(f"o{i}".encode(), json.dumps(
        {"id": f"o{i}", "text": f"Refugee story number {i} https://t.co/a{i}",
         "created_at": "2026-11-01T10:00:00Z"}).encode()) for i in range(12)]
    copies = [FeedRecord(f"c{i}".encode(), json.dumps(
        {"id": f"c{i}", "text": f"RT @someone{i}: Refugee story  number {i} https://t.co/other{i}",
         "created_at": "2026-11-01T10:00:00Z"}).encode()) for i in range(12)]

    async def scenario():
        stack = await Stack(settings, classifier=tiny_classifier).start()
        try:
            first = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(originals),
                                       FeedReport())
            await wait_committed(stack, first)
            second = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(copies),
                                        FeedReport())
            await wait_committed(stack, second)
            exported = stack.telemetry.registry.get_sample_value("stancestream_cache_hits_total")
        finally:
            await stack.stop()
        return stack.stats, exported

    stats, exported = asyncio.run(scenario())
    assert stats.copies == 12 and exported == 12
    rows = dict((tweet_id, probs) for tweet_id, *probs in clean_store.query(
        "SELECT tweet_id, p_pro, p_anti, p_neutral, p_unrelated FROM classifications FINAL").rows)
    assert len(rows) == 24
    for i in range(12):
        assert rows[f"c{i}"] == rows[f"o{i}"]
    assert clean_store.query("SELECT count() FROM tweets FINAL WHERE startsWith(id, 'c')").scalar() == 12


def test_near_capacity_a_call_waits_for_its_batch_to_fill_and_every_tweet_arrives_once(
        broker, clean_store, store_dir, tiny_classifier):
    """With ``batch_fill_s`` a call waits for ``batch_fill_size`` tweets while the load is near the model's rate on
    full calls. The tiny model is far faster than any test feed, so "near" is made to mean any load here
    (``batch_fill_load``), and whether fuller calls pay is not asked (``batch_fill_gain`` 0); the burst that gives
    the model its full calls, the paced feed, the fill, the merge and the
    delivery are the real ones."""

    async def small_calls(fill_s: float, prefix: str) -> tuple[float, float]:
        settings = stream_settings(broker, store_dir, partitions=1, batch_size=32, max_batch_size=64,
                                   batch_target_s=1000.0, batch_fill_size=32,
                                   batch_fill_s=fill_s, batch_fill_load=0.001, batch_fill_gain=0.0)
        stack = await Stack(settings, classifier=tiny_classifier).start()
        try:
            topic = physical(Topics.raw, settings)
            burst = await produce_feed(settings.kafka_bootstrap, topic, iter(tweets(64, f"{prefix}b")), FeedReport())
            await wait_committed(stack, burst)  # full calls: the model's rate on them is known
            registry = stack.telemetry.registry
            before = registry.get_sample_value("stancestream_batch_size_bucket", {"le": "16.0"})
            paced = await produce_feed(settings.kafka_bootstrap, topic, iter(tweets(96, f"{prefix}p")), FeedReport(),
                                       rate=60)  # a tweet every 17 ms
            await wait_committed(stack, paced)
            return (registry.get_sample_value("stancestream_batch_size_bucket", {"le": "16.0"}) - before,
                    registry.get_sample_value("stancestream_batch_size_sum"))
        finally:
            await stack.stop()

    small, total = asyncio.run(small_calls(0.0, "n"))
    assert total == 160 and small >= 8  # no fill: the model takes the few tweets that queued during its last call
    small, total = asyncio.run(small_calls(2.0, "f"))
    assert total == 160
    assert small <= 1  # the paced tweets wait for 32 at a time; only the tail waits out the 2 s and goes short
    assert clean_store.query("SELECT count(), uniqExact(tweet_id) FROM classifications FINAL").rows[0] == (320, 320)


def test_a_backlog_merges_into_batches_bounded_by_the_model_time_target(broker, clean_store, store_dir,
                                                                         tiny_classifier):
    """``STANCESTREAM_BATCH_TARGET_S`` bounds how many queued tweets go into one model call: a target far below
    one tweet's model time keeps every batch at ``batch_size`` (4), a generous one lets a backlog go up to
    ``max_batch_size``."""

    async def batch_sizes(target_s: float, prefix: str) -> tuple[float, float]:
        settings = stream_settings(broker, store_dir, partitions=1, batch_size=4, max_batch_size=64,
                                   batch_target_s=target_s)
        stack = await Stack(settings, classifier=tiny_classifier).start()
        try:
            report = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(tweets(96, prefix)),
                                        FeedReport())
            await wait_committed(stack, report)
            registry = stack.telemetry.registry
            return (registry.get_sample_value("stancestream_batch_size_bucket", {"le": "4.0"}),
                    registry.get_sample_value("stancestream_batch_size_count"))
        finally:
            await stack.stop()

    at_most_four, batches = asyncio.run(batch_sizes(1e-6, "a"))
    assert at_most_four == batches >= 24  # 96 tweets, never more than batch_size per model call
    at_most_four, batches = asyncio.run(batch_sizes(1000.0, "b"))
    assert at_most_four < batches < 24  # tweets queued behind the model went together
    assert clean_store.query("SELECT count() FROM classifications FINAL").scalar() == 192


def test_a_backlog_longer_than_the_fetch_wait_can_list_still_drains(clean_store, store_dir, tiny_classifier, tmp_path):
    """On durable broker storage Tansu lists every batch of a partition on each fetch and answers empty once the
    listing outlasts the fetch wait: with its wait fixed at 10 ms the worker never received a backlog of 800
    single-tweet batches. The wait grows while fetches come back empty from a partition that holds more."""
    from aiokafka import AIOKafkaProducer

    from shared.streaming.broker import EmbeddedBroker
    from shared.streaming.topics import ensure_topics

    backlog = 800
    with EmbeddedBroker(log_file=tmp_path / "tansu.log", storage_dir=tmp_path / "broker") as durable:
        settings = stream_settings(durable, store_dir, partitions=1, fetch_max_wait_ms=10)

        async def scenario():
            await ensure_topics(settings)
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
            await producer.start()
            try:  # one produce request per tweet: one batch object each, as a live feed writes them
                for record in tweets(backlog, "b"):
                    await producer.send_and_wait(physical(Topics.raw, settings), record.value, key=record.key)
            finally:
                await producer.stop()
            stack = await Stack(settings, classifier=tiny_classifier).start()
            try:
                await wait_committed(stack, FeedReport(sent=backlog, end_offsets={0: backlog}), timeout=90)
            finally:
                await stack.stop()

        asyncio.run(scenario())
    assert clean_store.query("SELECT count(), uniqExact(tweet_id) FROM classifications FINAL "
                             "WHERE tweet_id LIKE 'b%'").rows[0] == (backlog, backlog)
