"""Labels in, the trainer's gate, the adapter registry, and hot-swapping adapters in a running worker.

Real Tansu broker, real chDB, the tiny model and tiny adapters trained by ``train`` in the session.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import urllib.request

import numpy as np
import pytest

from labeled import TINY_RECIPE, labeled_rows, write_labeled_csv
from services.labels.importer import import_labels
from services.wiring import announcer
from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.streaming.feed import FeedReport, produce_feed
from shared.streaming.hotswap import publish_adapter_event
from shared.messages import AdapterAction, AdapterEvent
from shared.training.registry import AdapterRegistry, AdapterStatus, RegistryError
from shared.settings import Settings
from services.stack.stack import Stack
from shared.streaming.topics import Topics, physical
from shared.training.cycle import Trainer, gate
from shared.training.config import TrainConfig
from streams import read_topic, stream_settings, tweet_record, tweets, until, wait_committed

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]


def _versions(store) -> dict[str, list[int]]:
    """Tweet sequence numbers classified by each adapter version (rows, not FINAL: duplicates would show)."""
    out: dict[str, list[int]] = {}
    for tweet_id, version in store.query("SELECT tweet_id, adapter_version FROM classifications").rows:
        out.setdefault(version, []).append(int(tweet_id[1:]))
    return {v: sorted(seqs) for v, seqs in out.items()}


def _metrics(macro_f1: float, **langs: tuple[int, float]) -> dict:
    return {"macro_f1": macro_f1, "accuracy": macro_f1,
            "per_language": {lang: {"n": n, "accuracy": acc, "macro_f1": acc} for lang, (n, acc) in langs.items()}}


def test_gate_rules_macro_f1_margin_and_per_language_drop():
    settings = Settings(gate_max_f1_drop=0.01, gate_max_lang_drop=0.05, gate_min_lang_n=20)
    active = _metrics(0.60, en=(40, 0.80), de=(25, 0.70), sw=(5, 0.90))
    ok, reason = gate(_metrics(0.595, en=(40, 0.78), de=(25, 0.70), sw=(5, 0.20)), active, settings)
    assert ok, reason  # within the F1 margin; sw has too few holdout tweets to be gated
    ok, reason = gate(_metrics(0.58, en=(40, 0.80), de=(25, 0.70)), active, settings)
    assert not ok and "macro-F1 0.580 is 0.020 below" in reason
    ok, reason = gate(_metrics(0.65, en=(40, 0.90), de=(25, 0.60)), active, settings)
    assert not ok and reason.startswith("language de (n=25)")


@pytest.mark.kafka
def test_labels_latest_label_wins_and_invalid_labels_are_dead_lettered(broker, clean_store, store_dir, tiny_settings,
                                                                       tmp_path):
    settings = stream_settings(broker, store_dir, tiny_settings, registry_dir=tmp_path / "registry")
    early = {"tweet_id": "L1", "text": "refugees welcome", "lang": "en", "label": "pro-immigration",
             "annotator": "ann1", "labeled_at": "2026-11-01T10:00:00Z"}
    late = early | {"label": "neutral", "annotator": "ann2", "labeled_at": "2026-11-02T10:00:00Z"}
    bad = [early | {"tweet_id": "L2", "label": "maybe"}, {"tweet_id": "L3", "lang": "en", "label": "neutral"}, "{oops"]
    path = tmp_path / "labels.jsonl"  # the late label is sent first: labeled_at decides, not arrival
    path.write_text("\n".join([json.dumps(late), json.dumps(early)] + [b if isinstance(b, str) else json.dumps(b)
                                                                      for b in bad]) + "\n")

    async def scenario():
        stack = await Stack(settings, classifier=StanceClassifier.load(tiny_settings)).start()
        try:
            result = await asyncio.to_thread(import_labels, settings, str(path), 30.0)
            dead = await read_topic(settings, Topics.dlq, 3)
        finally:
            await stack.stop()
        return result, dead

    result, dead = asyncio.run(scenario())
    assert result.ingested and result.sent == 5
    assert clean_store.query("SELECT label, annotator FROM labels FINAL").rows == [("neutral", "ann2")]
    reasons = clean_store.query("SELECT reason FROM dead_letters FINAL WHERE source_topic = {t:String} "
                                "ORDER BY offset", {"t": physical(Topics.labels, settings)}).rows
    assert len(reasons) == 3 and "label" in reasons[0][0] and "text" in reasons[1][0] and "JSON" in reasons[2][0]
    assert len(dead) == 3


@pytest.mark.kafka
def test_hot_swap_trainer_promotes_v2_and_the_running_worker_switches_mid_stream(
        broker, clean_store, store_dir, tiny_settings, tiny_adapter, tmp_path):
    # One partition: the stream's order is the tweets' sequence numbers, so "mid-stream" is checkable. The gate
    # is opened wide: this test is about the switch (the gate's own tests are below).
    settings = stream_settings(broker, store_dir, tiny_settings, partitions=1, registry_dir=tmp_path / "registry",
                               trainer_min_new_labels=10, holdout_fraction=0.25, gate_max_f1_drop=1.0,
                               gate_max_lang_drop=1.0)
    AdapterRegistry(clean_store, settings.adapters_dir).seed(tiny_adapter)
    classifier = StanceClassifier.load(tiny_settings)
    labels = write_labeled_csv(tmp_path / "labels.csv", n_per_cell=4)
    enough = threading.Event()

    def endless():
        i = extra = 0
        while extra < 30:  # until 30 tweets after the switch
            yield tweet_record(i, "h")
            i += 1
            extra += enough.is_set()

    async def scenario():
        stack = await Stack(settings, classifier=classifier).start()
        try:
            assert classifier.adapter_version == "v1"
            imported = await asyncio.to_thread(import_labels, settings, str(labels), 30.0)
            assert imported.ingested and imported.sent == 48
            report = FeedReport()
            feeder = asyncio.create_task(produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings),
                                                      endless(), report, rate=25))
            await until(lambda: stack.stats.tweets >= 20, what="v1 rows")
            trainer = Trainer(settings, clean_store, AdapterRegistry(clean_store, settings.adapters_dir),
                              announcer(settings), telemetry=stack.telemetry)
            cycle = await asyncio.to_thread(trainer.run_cycle)
            assert cycle.decision == "promoted", cycle.reason
            await until(lambda: classifier.adapter_version == "v2", what="the switch to v2")
            enough.set()
            await asyncio.wait_for(feeder, timeout=30)
            await wait_committed(stack, report)
            metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(stack.telemetry.address).read().decode())
        finally:
            await stack.stop()
        return cycle, report, stack.stats, metrics

    cycle, report, stats, metrics = asyncio.run(scenario())
    # The Prometheus endpoint tells the same story.
    assert f"stancestream_tweets_total {float(stats.tweets)}" in metrics
    assert 'stancestream_active_adapter{version="v2"} 1.0' in metrics and 'version="v1"' not in metrics
    assert 'stancestream_adapter_switches_total{outcome="switched"} 1.0' in metrics
    assert 'stancestream_training_runs_total{decision="promoted"} 1.0' in metrics
    assert f"stancestream_labels_total {48.0}" in metrics
    versions = _versions(clean_store)
    assert set(versions) == {"v1", "v2"} and stats.adapter_switches == 1
    assert sorted(versions["v1"] + versions["v2"]) == list(range(report.sent))  # each tweet once, no gaps
    assert max(versions["v1"]) < min(versions["v2"])  # the switch falls between batches, in stream order
    assert len(versions["v2"]) >= 30
    registry = AdapterRegistry(clean_store, settings.adapters_dir)
    assert registry.active().version == "v2" and registry.get("v1").status is AdapterStatus.retired
    assert registry.active().replaced == "v1" and registry.active().parent == "v1"
    run = clean_store.query("SELECT decision, labels, train_examples, holdout_examples, candidate_version, "
                            "active_metrics, candidate_metrics FROM adapter_runs").dicts()
    assert len(run) == 1 and run[0]["decision"] == "promoted" and run[0]["candidate_version"] == "v2"
    assert run[0]["labels"] == 48 and run[0]["train_examples"] + run[0]["holdout_examples"] == 48
    assert json.loads(run[0]["candidate_metrics"])["n"] == run[0]["holdout_examples"] == cycle.holdout_examples
    assert "macro_f1" in json.loads(run[0]["active_metrics"])
    # the promoted adapter carries its errors measured on the frozen holdout, for corrected label shares
    calibration = registry.calibration("v2")
    assert calibration is not None and calibration.n == cycle.holdout_examples
    assert calibration.source.startswith("frozen holdout")
    assert np.allclose(calibration.soft.sum(axis=1), 1, atol=1e-4)


def test_gate_rejects_a_worse_candidate_records_why_and_keeps_the_active_version(
        clean_store, store_dir, tiny_settings, tiny_adapter, tmp_path):
    settings = tiny_settings.model_copy(update={"data_dir": store_dir, "registry_dir": tmp_path / "registry",
                                                "trainer_min_new_labels": 10})
    registry = AdapterRegistry(clean_store, settings.adapters_dir)
    registry.seed(tiny_adapter)
    stored = import_labels(settings, str(write_labeled_csv(tmp_path / "labels.csv", n_per_cell=4)))
    assert stored.stored == 48 and stored.dead_lettered == 0
    announced: list[AdapterEvent] = []
    # A learning rate of 0 leaves LoRA's B matrices at zero: the candidate is the bare base model, far worse
    # than v1 on these tweets.
    untrained = TrainConfig(**TINY_RECIPE | {"learning_rate": 0.0})
    report = Trainer(settings, clean_store, registry, announced.append, recipe=untrained).run_cycle()
    assert report.decision == "rejected" and "macro-F1" in report.reason
    assert report.candidate_metrics["macro_f1"] < report.active_metrics["macro_f1"]
    assert registry.active().version == "v1" and announced == []
    assert registry.get("v2").status is AdapterStatus.rejected and registry.get("v2").reason == report.reason
    row = clean_store.query("SELECT decision, reason, active_version, candidate_version FROM adapter_runs").rows
    assert row == [("rejected", report.reason, "v1", "v2")]
    # The holdout is frozen: a second cycle scores the same tweets, and new labels only join training.
    first_holdout = clean_store.query("SELECT tweet_id FROM holdout FINAL ORDER BY tweet_id").rows
    import_labels(settings, str(write_labeled_csv(tmp_path / "more.csv", rows=labeled_rows(4, ("fr",), "m-"))))
    again = Trainer(settings, clean_store, registry, announced.append, recipe=untrained).run_cycle()
    assert clean_store.query("SELECT tweet_id FROM holdout FINAL ORDER BY tweet_id").rows == first_holdout
    assert again.holdout_examples == len(first_holdout) and again.train_examples == 64 - len(first_holdout)


def test_gate_skips_a_cycle_when_too_few_labels_are_new(clean_store, store_dir, tiny_settings, tiny_adapter, tmp_path):
    settings = tiny_settings.model_copy(update={"data_dir": store_dir, "registry_dir": tmp_path / "registry",
                                                "trainer_min_new_labels": 100})
    registry = AdapterRegistry(clean_store, settings.adapters_dir)
    registry.seed(tiny_adapter)
    import_labels(settings, str(write_labeled_csv(tmp_path / "labels.csv", n_per_cell=2)))
    report = Trainer(settings, clean_store, registry, lambda e: None).run_cycle()
    assert report.decision == "skipped" and report.reason.startswith("24 new label(s)")
    assert registry.next_version() == "v2"  # nothing was trained
    assert clean_store.query("SELECT decision FROM adapter_runs").rows == [("skipped",)]


@pytest.mark.kafka
def test_rollback_from_the_cli_restores_the_previous_adapter_in_running_workers(
        broker, clean_store, store_dir, tiny_settings, tiny_adapter, tmp_path, monkeypatch):
    from services import cli

    settings = stream_settings(broker, store_dir, tiny_settings, registry_dir=tmp_path / "registry")
    registry = AdapterRegistry(clean_store, settings.adapters_dir)
    registry.seed(tiny_adapter)
    registry.add_candidate(tiny_adapter, "v2", "v1", {})
    registry.promote("v2", "test set-up")
    for name, value in {"KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "STANCESTREAM_DATA_DIR": str(store_dir),
                        "STANCESTREAM_REGISTRY_DIR": str(settings.adapters_dir),
                        "STANCESTREAM_TOPIC_PREFIX": settings.topic_prefix, "STANCESTREAM_ADAPTER": "none"}.items():
        monkeypatch.setenv(name, value)
    classifier = StanceClassifier.load(tiny_settings)

    async def scenario():
        stack = await Stack(settings, classifier=classifier).start()
        try:
            assert classifier.adapter_version == "v2"
            first = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(tweets(10, "r")),
                                       FeedReport())
            await wait_committed(stack, first)
            assert await asyncio.to_thread(cli.main, ["adapters", "rollback"]) == 0
            await until(lambda: classifier.adapter_version == "v1", what="the rollback to v1")
            later = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings),
                                       iter([tweet_record(i, "r") for i in range(10, 20)]), FeedReport())
            await wait_committed(stack, later)
        finally:
            await stack.stop()

    asyncio.run(scenario())
    versions = _versions(clean_store)
    assert versions == {"v2": list(range(10)), "v1": list(range(10, 20))}
    assert registry.active().version == "v1" and registry.get("v2").reason == "rolled back to v1"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()  # v1 replaced no earlier version


@pytest.mark.kafka
def test_hot_swap_refuses_a_corrupt_or_foreign_adapter_and_keeps_serving(
        broker, clean_store, store_dir, tiny_settings, tiny_adapter, tmp_path):
    settings = stream_settings(broker, store_dir, tiny_settings, registry_dir=tmp_path / "registry")
    AdapterRegistry(clean_store, settings.adapters_dir).seed(tiny_adapter)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_adapter, corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_adapter, foreign)
    meta = json.loads((foreign / "stancestream.json").read_text())
    (foreign / "stancestream.json").write_text(json.dumps(meta | {"base_model_id": "other-model@0123456789abcdef"}))
    classifier = StanceClassifier.load(tiny_settings)

    async def scenario():
        stack = await Stack(settings, classifier=classifier).start()
        try:
            for version, path in (("v8", corrupt), ("v9", foreign)):
                await publish_adapter_event(settings, AdapterEvent(version=version, path=str(path),
                                                                   action=AdapterAction.promote))
            await until(lambda: stack.stats.adapter_failures == 2, what="two refusals")
            report = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(tweets(8, "c")),
                                        FeedReport())
            await wait_committed(stack, report)
        finally:
            await stack.stop()
        return stack.stats

    stats = asyncio.run(scenario())
    assert stats.adapter_switches == 0 and classifier.adapter_version == "v1"
    assert _versions(clean_store) == {"v1": list(range(8))}
    with pytest.raises(ClassifierError, match="unreadable"):
        classifier.switch_adapter(corrupt)
    with pytest.raises(ClassifierError, match="trained on other-model"):
        classifier.switch_adapter(foreign)


def test_labels_import_keys_rows_with_a_shared_mangled_id_by_their_text(clean_store, store_dir, tiny_settings, tmp_path):
    settings = tiny_settings.model_copy(update={"data_dir": store_dir, "registry_dir": tmp_path / "registry"})
    path = tmp_path / "mangled.csv"  # what a spreadsheet does to 19-digit ids
    path.write_text("id,lang,label,text\n1.59E+18,en,neutral,first tweet\n1.59E+18,es,anti-immigration,segundo\n"
                    "7,en,pro-immigration,a tweet with its own id\n7,en,neutral,a tweet with its own id\n")
    warnings: list[str] = []
    result = import_labels(settings, str(path), warn=warnings.append)
    assert result.stored == 4 and len(warnings) == 1 and "2 rows share their id" in warnings[0]
    rows = clean_store.query("SELECT tweet_id, label FROM labels FINAL ORDER BY tweet_id").rows
    assert len(rows) == 3  # two texts kept apart; the same id and text relabeled: the later row wins
    assert ("7", "neutral") in rows and all(r[0].startswith("text-") for r in rows if r[0] != "7")
