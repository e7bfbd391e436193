"""Replays beside the live stream (real Tansu, real chDB, tiny model): completion, isolation, resume, files."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from labeled import TINY_RECIPE, write_labeled_csv
from shared.classifier.model import StanceClassifier
from shared.streaming.feed import FeedReport, produce_feed
from shared.streaming.processing import InboundMessage, TweetBatchProcessor
from shared.training.registry import AdapterRegistry
from services.replay.runner import ReplayPlan, run_replay
from services.stack.stack import Stack
from shared.store.queries.replays import replay_runs
from shared.store.sinks import ClickHouseSink
from shared.streaming.topics import Topics, physical
from shared.training.config import TrainConfig
from shared.training.data import read_labeled
from shared.training.loop import train
from streams import TEXTS, stream_settings, tweets, wait_committed

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]

DOC = (Path(__file__).resolve().parents[2] / "docs" / "queries.md").read_text()
Q3 = dict(re.findall(r"^### (Q\d+)\..*?```sql\n(.*?)```", DOC, flags=re.S | re.M))["Q3"]
LAST_YEAR = datetime(2025, 6, 1, tzinfo=timezone.utc)


def _archive(n: int, start: datetime = LAST_YEAR) -> list[bytes]:
    return [json.dumps({"id": f"a{i}", "text": f"{TEXTS[i % 3]} {i}", "lang": "en",
                        "created_at": (start + timedelta(minutes=i)).isoformat()}).encode() for i in range(n)]


def _classify_into_archive(store, classifier, values: list[bytes]) -> None:
    """What the live worker did last year: the same batch code, straight into ClickHouse."""
    processor, sink = TweetBatchProcessor(classifier), ClickHouseSink(store)
    for at in range(0, len(values), 100):
        result = processor.classify([InboundMessage(v, "tweets.raw", 0, at + i)
                                     for i, v in enumerate(values[at: at + 100])])
        sink.write(result.tweets, result.classifications, result.dead_letters)


@pytest.fixture(scope="module")
def untrained_adapter(tiny_settings, tmp_path_factory):
    """A second adapter that disagrees with v1: trained with a learning rate of 0, it is the bare base model."""
    root = tmp_path_factory.mktemp("untrained")
    data = write_labeled_csv(root / "labels.csv", n_per_cell=4)
    return train(tiny_settings, read_labeled([data]), root / "run", TrainConfig(**TINY_RECIPE | {"learning_rate": 0.0}),
                 version="v2", progress=False).adapter_dir


@pytest.mark.kafka
def test_replay_1000_archived_tweets_with_v2_while_the_live_stream_runs(
        broker, clean_store, store_dir, tiny_settings, tiny_adapter, untrained_adapter, tmp_path):
    settings = stream_settings(broker, store_dir, tiny_settings, partitions=1, registry_dir=tmp_path / "registry")
    registry = AdapterRegistry(clean_store, settings.adapters_dir)
    v1 = registry.seed(tiny_adapter)
    v2 = registry.add_candidate(untrained_adapter, "v2", "v1", {})
    archive = _archive(1000)
    _classify_into_archive(clean_store, StanceClassifier.load(tiny_settings, adapter=Path(v1.path)), archive)
    plan = ReplayPlan.new("v2", v2.path, [], LAST_YEAR, LAST_YEAR + timedelta(days=365), [])
    replayer = StanceClassifier.load(tiny_settings, adapter=Path(v2.path))

    async def scenario():
        stack = await Stack(settings, classifier=StanceClassifier.load(tiny_settings)).start()
        try:
            live = asyncio.create_task(produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings),
                                                    iter(tweets(150, "L")), FeedReport(), rate=40))
            replayed = await asyncio.to_thread(run_replay, clean_store, replayer, plan, batch_size=32, progress=False)
            report = await live
            await wait_committed(stack, report)
            committed = await stack.committed([0])
        finally:
            await stack.stop()
        return replayed, report, committed

    replayed, report, committed = asyncio.run(scenario())
    assert (replayed.total, replayed.done) == (1000, 1000)
    assert committed == {0: report.end_offsets[0]} == {0: 150}  # the live group's offsets: exactly the live feed
    live = clean_store.query("SELECT tweet_id, adapter_version, replay_run, classified_at FROM classifications "
                             "WHERE startsWith(tweet_id, 'L')").rows
    assert sorted(int(r[0][1:]) for r in live) == list(range(150)) and {(r[1], r[2]) for r in live} == {("v1", "")}
    in_order = sorted(live, key=lambda r: int(r[0][1:]))
    assert all(a[3] <= b[3] for a, b in zip(in_order, in_order[1:]))  # classified in stream order
    matrix = clean_store.query(Q3, {"a": "v1", "b": "v2", "run": plan.run_id}).rows
    assert sum(n for _, _, n in matrix) == 1000
    assert any(a != b for a, b, _ in matrix)  # the two versions do disagree somewhere
    replay_ids = {r[0] for r in clean_store.query("SELECT tweet_id FROM classifications WHERE replay_run = {r:String}",
                                                  {"r": plan.run_id}).rows}
    assert replay_ids == {f"a{i}" for i in range(1000)}
    status = [r for r in replay_runs(clean_store) if r["run_id"] == plan.run_id]
    assert [(r["status"], r["done"], r["total"]) for r in status] == [("done", 1000, 1000)]


class _InterruptAfter:
    """A classifier that is stopped (Ctrl-C) after ``batches`` batches: the fault a user causes."""

    def __init__(self, classifier, batches: int):
        self.inner, self.left = classifier, batches
        self.model_id, self.adapter_version = classifier.model_id, classifier.adapter_version

    def predict_proba(self, texts):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.predict_proba(texts)


def test_replay_resumes_an_interrupted_run_without_repeating_tweets(clean_store, store_dir, tiny_settings, tiny_adapter):
    archive = _archive(100)
    classifier = StanceClassifier.load(tiny_settings, adapter=tiny_adapter)
    _classify_into_archive(clean_store, classifier, archive)
    plan = ReplayPlan.new("v1", str(tiny_adapter), [], None, None, [])
    with pytest.raises(KeyboardInterrupt):
        run_replay(clean_store, _InterruptAfter(classifier, 2), plan, batch_size=16, progress=False)
    interrupted = [r for r in replay_runs(clean_store) if r["run_id"] == plan.run_id][0]
    assert (interrupted["status"], interrupted["done"]) == ("interrupted", 32)
    resumed = run_replay(clean_store, classifier, ReplayPlan.load(clean_store, plan.run_id), batch_size=16,
                         progress=False)
    assert (resumed.total, resumed.done) == (100, 100)
    counts = clean_store.query("SELECT tweet_id, count() FROM classifications WHERE replay_run = {r:String} "
                               "GROUP BY tweet_id", {"r": plan.run_id}).rows
    assert len(counts) == 100 and all(n == 1 for _, n in counts)  # each tweet classified once by the run
