"""A real Label Studio export (tests/fixtures/label_studio_export.json, Label Studio 1.23.2) imported through the
real stack (Tansu broker, the worker's labels agent, chDB), and the label queue's refusals on a real store."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.labels.importer import import_labels
from services.labels.queue import LabelQueueError, make_label_queue
from services.stack.stack import Stack
from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.settings import Settings
from shared.store.queries.adapters import insert_adapter_row
from shared.streaming.topics import Topics, physical
from streams import stream_settings

pytestmark = pytest.mark.clickhouse

EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio_export.json"
#: The annotator's work in the real instance (benchmarks/label_studio_roundtrip.py PLAN), with the time of each
#: task's latest annotation: rt-de-1 was labeled neutral, then pro-immigration; rt-de-3 was skipped; rt-en-4
#: and rt-es-2 were left alone.
EXPECTED = {
    "rt-en-1": ("anti-immigration", "en", "2026-12-02 02:49:26.493"),
    "rt-en-3": ("neutral", "en", "2026-12-02 02:49:26.903"),
    "rt-de-1": ("pro-immigration", "de", "2026-12-02 02:49:27.598"),
    "rt-de-2": ("anti-immigration", "de", "2026-12-02 02:49:27.985"),
    "rt-es-1": ("pro-immigration", "es", "2026-12-02 02:49:28.740"),
    "rt-es-3": ("neutral", "es", "2026-12-02 02:49:29.085"),
}


@pytest.mark.kafka
@pytest.mark.model
def test_a_real_label_studio_export_through_the_stack_stores_exactly_the_annotated_tasks(
        broker, clean_store, store_dir, tiny_settings, tmp_path):
    settings = stream_settings(broker, store_dir, tiny_settings, registry_dir=tmp_path / "registry")
    broken = tmp_path / "broken-export.json"  # tasks Label Studio can export but that are no valid label
    task = json.loads(EXPORT.read_text())[0]
    answers = [("x-two", ["neutral", "unrelated"]), ("x-odd", ["maybe"]), ("", ["neutral"])]
    broken.write_text(json.dumps([
        task | {"data": task["data"] | {"tweet_id": tweet_id},
                "annotations": [task["annotations"][0] | {"result": [task["annotations"][0]["result"][0]
                                                                     | {"value": {"choices": choices}}]}]}
        for tweet_id, choices in answers]))
    warnings: list[str] = []

    async def scenario():
        stack = await Stack(settings, classifier=StanceClassifier.load(tiny_settings)).start()
        try:
            exported = await asyncio.to_thread(import_labels, settings, str(EXPORT), 30.0, warnings.append)
            refused = await asyncio.to_thread(import_labels, settings, str(broken), 30.0)
        finally:
            await stack.stop()
        return exported, refused

    exported, refused = asyncio.run(scenario())
    assert exported.ingested and exported.sent == 6 and refused.ingested and refused.sent == 3
    assert warnings == [f"{EXPORT}: Label Studio export: 6 annotated task(s); 3 without an annotation skipped"]
    rows = clean_store.query("SELECT tweet_id, toString(label), lang, annotator, labeled_at FROM labels FINAL").rows
    assert {r[0]: (r[1], r[2], r[4].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]) for r in rows} == EXPECTED
    assert {r[3] for r in rows} == {"label-studio:1"}
    reasons = [r[0] for r in clean_store.query(
        "SELECT reason FROM dead_letters FINAL WHERE source_topic = {t:String}",
        {"t": physical(Topics.labels, settings)}).rows]
    assert sorted(r.split(":")[1].strip() for r in reasons) == ["label", "label", "tweet_id"], reasons


def _active(store, version: str = "v1") -> None:
    now = datetime.now(timezone.utc)
    insert_adapter_row(store, (version, None, f"/nowhere/{version}", "active", None, "{}", "test", now, now))


def _classified(store, tweet_id: str, lang: str, created: datetime, version: str = "v1",
                probs=(0.4, 0.3, 0.2, 0.1)) -> None:
    store.insert("tweets", [(tweet_id, f"text of {tweet_id}", created, created)], ("id", "text", "created_at",
                                                                                  "ingested_at"))
    store.insert("classifications", [(tweet_id, version, "m@0", lang, 0.9, "immigration", "pro", "pro-immigration",
                                      *probs, created, created, 1.0)],
                 ("tweet_id", "adapter_version", "model_id", "lang", "lang_confidence", "topic", "stance", "label",
                  "p_pro", "p_anti", "p_neutral", "p_unrelated", "tweet_created_at", "classified_at", "latency_ms"))


def test_label_queue_refuses_without_active_adapter_unknown_language_or_tweets_in_the_window(
        clean_store, store_dir, tmp_path):
    settings = Settings(data_dir=store_dir, registry_dir=tmp_path / "registry", adapter=None)
    now = datetime.now(timezone.utc)
    queue = tmp_path / "queue.json"

    def make(langs, since=now - timedelta(days=7)):
        return make_label_queue(settings, langs, 5, str(queue), since, candidate="none")

    _classified(clean_store, "old-en", "en", now - timedelta(days=30))
    _classified(clean_store, "new-de", "de", now - timedelta(hours=1), version="v0")  # another adapter's
    with pytest.raises(LabelQueueError, match="^no active adapter in the registry"):
        make(["en"])
    _active(clean_store)
    with pytest.raises(LabelQueueError, match=r"^unknown language xx, yy: .*\(classified: de, en\)"):
        make(["en", "xx", "yy"])
    with pytest.raises(LabelQueueError, match="^no tweets in the window: none created since .* classified by v1 "
                                              "in en, de"):
        make(["en", "de"])
    assert not queue.exists()
    made = make(["en", "de"], since=now - timedelta(days=31))  # the window reaches the old tweet
    assert [(q.lang, [i.tweet.tweet_id for i in q.queued]) for q in made.queues] == [("en", ["old-en"]), ("de", [])]
    assert made.queues[1].summary() == "de: nothing to queue (no classified tweets in the window)"
    assert json.loads(queue.read_text())[0]["data"]["tweet_id"] == "old-en"

    # a candidate that cannot be loaded: the registry's latest is left out with a note, a named one is an error
    insert_adapter_row(clean_store, ("v2", "v1", str(tmp_path / "gone"), "candidate", None, "{}", "trained", now,
                                     now))
    notes: list[str] = []
    made = make_label_queue(settings, ["en"], 5, str(queue), now - timedelta(days=31), note=notes.append)
    assert made.candidate_version is None and len(made.queues[0].queued) == 1
    assert notes == [f"the latest candidate v2 cannot be loaded ({tmp_path / 'gone'} is not a LoRA adapter "
                     "directory (no adapter_config.json)): ranked without it"]
    with pytest.raises(ClassifierError, match="not a LoRA adapter directory"):
        make_label_queue(settings, ["en"], 5, str(queue), now - timedelta(days=31), candidate="v2")
    with pytest.raises(LabelQueueError, match="--candidate v1 is the active adapter"):
        make_label_queue(settings, ["en"], 5, str(queue), now - timedelta(days=31), candidate="v1")


class _ThroughTheGatewayPolicy:
    """What the label queue's queries meet while `run` is up: the gateway runs them under the ad-hoc SQL policy."""

    def __init__(self, store):
        self.store = store

    def query(self, sql, params=None):
        from shared.store.sqlpolicy import run_adhoc

        return run_adhoc(self.store, sql, params)


@pytest.mark.parametrize("by", ["margin", "entropy"])
def test_the_queue_queries_pass_the_gateway_policy_and_rank_as_the_python_does(clean_store, by):
    from shared.labeling.queue import UNCERTAINTY
    from shared.store.queries.label_queue import classified_languages, queue_pool

    now = datetime.now(timezone.utc)
    probs = {"q0": (0.4, 0.3, 0.2, 0.1), "q1": (0.45, 0.45, 0.05, 0.05), "q2": (0.7, 0.1, 0.1, 0.1),
             "q3": (0.4, 0.2, 0.2, 0.2)}  # margin ranks q1 first, entropy q3
    for tweet_id, p in probs.items():
        _classified(clean_store, tweet_id, "en", now - timedelta(hours=1), probs=p)
    clean_store.insert("labels", [("q2", "t", "en", "neutral", "a", now, now)],
                       ("tweet_id", "text", "lang", "label", "annotator", "labeled_at", "ingested_at"))
    gateway = _ThroughTheGatewayPolicy(clean_store)
    assert classified_languages(gateway) == ["en"]
    rows = queue_pool(gateway, "v1", now - timedelta(days=1), ["en"], 2, by)
    assert rows == queue_pool(clean_store, "v1", now - timedelta(days=1), ["en"], 2, by)
    unlabeled = [r for r in rows if not r[7]]
    expected = sorted(["q0", "q1", "q3"], key=lambda i: -UNCERTAINTY[by](probs[i]))[:2]
    assert [r[0] for r in unlabeled] == expected == {"margin": ["q1", "q0"], "entropy": ["q3", "q0"]}[by]
    assert [r[0] for r in rows if r[7]] == ["q2"]


@pytest.mark.model
def test_the_latest_candidate_adapter_scores_the_pool_and_its_disagreement_boosts_the_ranking(
        clean_store, store_dir, tiny_settings, tiny_adapter, tmp_path):
    from shared.labeling.queue import disagreement

    settings = tiny_settings.model_copy(update={"data_dir": store_dir, "registry_dir": tmp_path / "registry"})
    now = datetime.now(timezone.utc)
    texts = {"c1": "refugees are welcome here", "c2": "RT @a: refugees are welcome here https://t.co/z",
             "c3": "close the border now", "c4": "the minister will talk about visa policy",
             "c5": "great match tonight what a goal", "c6": "deport them all"}
    for tweet_id, text in texts.items():
        clean_store.insert("tweets", [(tweet_id, text, now - timedelta(hours=1), now)],
                           ("id", "text", "created_at", "ingested_at"))
        clean_store.insert("classifications", [(tweet_id, "v1", "m@0", "en", 0.9, "immigration", "pro",
                                                "pro-immigration", 0.4, 0.3, 0.2, 0.1, now - timedelta(hours=1),
                                                now, 1.0)],
                           ("tweet_id", "adapter_version", "model_id", "lang", "lang_confidence", "topic", "stance",
                            "label", "p_pro", "p_anti", "p_neutral", "p_unrelated", "tweet_created_at",
                            "classified_at", "latency_ms"))
    _active(clean_store)
    older = now - timedelta(days=1)
    insert_adapter_row(clean_store, ("v2", "v1", "/nowhere/v2", "candidate", None, "{}", "trained", older, older))
    insert_adapter_row(clean_store, ("v3", "v1", str(tiny_adapter), "candidate", None, "{}", "trained", now, now))
    notes: list[str] = []
    result = make_label_queue(settings, ["en"], 3, str(tmp_path / "q.json"), now - timedelta(days=1),
                              note=notes.append)
    assert result.candidate_version == "v3" and notes == ["disagreement with candidate v3 boosts the ranking"]
    # the same active probabilities everywhere: the candidate alone orders the queue, copies still dropped
    candidate = StanceClassifier.load(tiny_settings, tiny_adapter).predict_proba(list(texts.values()))
    expected = {i: disagreement((0.4, 0.3, 0.2, 0.1), tuple(float(x) for x in p))
                for i, p in zip(texts, candidate)}
    queued = result.queues[0].queued
    assert len(queued) == 3 and not {"c1", "c2"} <= {q.tweet.tweet_id for q in queued}
    for item in queued:
        assert item.disagreement == pytest.approx(expected[item.tweet.tweet_id], abs=1e-5)
    assert [q.disagreement for q in queued] == sorted((q.disagreement for q in queued), reverse=True)
    assert max(expected.values()) == pytest.approx(queued[0].disagreement, abs=1e-5)
