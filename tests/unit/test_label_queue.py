"""The label queue's choice (ranking, copies, labeled tweets) on hand-made probabilities and texts, and the Label
Studio formats against a real instance's export (tests/fixtures/label_studio_export.json, made by
benchmarks/label_studio_roundtrip.py with Label Studio 1.23.2)."""

from __future__ import annotations

import argparse
import csv
import json
from datetime import timedelta
from pathlib import Path

import pytest

from services.cli.common import duration
from shared.labeling.files import QueueFileError, queue_paths, write_queue_files
from shared.labeling.label_studio import (
    CONFIG_FILE, FROM_NAME, TO_NAME, config_choices, exported_labels, import_task, label_config,
)
from shared.labeling.queue import (
    CSV_COLUMNS, CopyIndex, PoolTweet, build_queue, copy_tokens, disagreement, entropy_uncertainty,
    margin_uncertainty,
)
from shared.messages import CATEGORIES, Category
from shared.streaming.label_files import LabelFileError, read_label_file
from shared.streaming.validation import InvalidMessage, parse_label

EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio_export.json"


def tweet(tweet_id: str, probs, text: str | None = None, lang: str = "en", labeled: bool = False) -> PoolTweet:
    return PoolTweet(tweet_id, lang, text or f"distinct words for tweet number {tweet_id}", tuple(probs), labeled)


def ids(queue) -> list[str]:
    return [item.tweet.tweet_id for item in queue.queued]


# --- uncertainty and disagreement -------------------------------------------------------------------------------


def test_margin_and_entropy_uncertainty_of_hand_made_probabilities():
    assert margin_uncertainty((0.40, 0.35, 0.15, 0.10)) == pytest.approx(0.95)
    assert margin_uncertainty((0.10, 0.70, 0.15, 0.05)) == pytest.approx(0.45)  # order of the classes is irrelevant
    assert margin_uncertainty((1.0, 0.0, 0.0, 0.0)) == pytest.approx(0.0)
    assert entropy_uncertainty((0.25, 0.25, 0.25, 0.25)) == pytest.approx(1.0)
    assert entropy_uncertainty((1.0, 0.0, 0.0, 0.0)) == pytest.approx(0.0)
    assert entropy_uncertainty((0.5, 0.5, 0.0, 0.0)) == pytest.approx(0.5)  # log 2 / log 4


def test_disagreement_is_half_a_flip_and_half_the_total_variation():
    assert disagreement((0.7, 0.1, 0.1, 0.1), (0.7, 0.1, 0.1, 0.1)) == 0.0
    assert disagreement((0.6, 0.2, 0.1, 0.1), (0.4, 0.4, 0.1, 0.1)) == pytest.approx(0.1)  # same label, TV 0.2
    assert disagreement((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0)) == pytest.approx(1.0)  # flip, TV 1


# --- ranking ------------------------------------------------------------------------------------------------------


def test_most_uncertain_first_and_n_per_language():
    pool = [tweet("sure", (0.9, 0.05, 0.03, 0.02)), tweet("torn", (0.4, 0.38, 0.12, 0.1)),
            tweet("mid", (0.6, 0.2, 0.1, 0.1)), tweet("lean", (0.5, 0.3, 0.1, 0.1)),
            tweet("de-torn", (0.3, 0.3, 0.3, 0.1), lang="de")]
    queue = build_queue("en", pool, 3)
    assert ids(queue) == ["torn", "lean", "mid"]
    assert (queue.pool, queue.skipped_labeled, queue.dropped_duplicates) == (4, 0, 0)
    assert queue.queued[0].predicted is Category.pro and queue.queued[0].disagreement is None
    assert ids(build_queue("de", pool, 3)) == ["de-torn"]
    assert ids(build_queue("fr", pool, 3)) == [] and "nothing to queue" in build_queue("fr", pool, 3).summary()


def test_margin_and_entropy_can_disagree_on_the_order():
    # two labels tied, the others ruled out: margin's most uncertain; spread over all four: entropy's
    pool = [tweet("tie", (0.45, 0.45, 0.05, 0.05)), tweet("spread", (0.4, 0.2, 0.2, 0.2))]
    assert ids(build_queue("en", pool, 2, by="margin")) == ["tie", "spread"]
    assert ids(build_queue("en", pool, 2, by="entropy")) == ["spread", "tie"]
    with pytest.raises(ValueError, match="unknown uncertainty measure"):
        build_queue("en", pool, 2, by="variance")


def test_disagreement_with_the_candidate_boosts_a_less_uncertain_tweet():
    pool = [tweet("agreed", (0.4, 0.3, 0.2, 0.1)), tweet("flipped", (0.6, 0.2, 0.1, 0.1))]
    assert ids(build_queue("en", pool, 1)) == ["agreed"]
    candidate = {"agreed": (0.4, 0.3, 0.2, 0.1), "flipped": (0.1, 0.7, 0.1, 0.1)}
    queue = build_queue("en", pool, 2, candidate=candidate)
    assert ids(queue) == ["flipped", "agreed"]
    assert queue.queued[0].disagreement == pytest.approx(0.75) and queue.queued[1].disagreement == 0.0
    assert queue.queued[0].score == pytest.approx(0.6 + 0.75)


# --- copies -------------------------------------------------------------------------------------------------------


def test_copy_tokens_drop_retweet_prefixes_links_mentions_punctuation_and_case():
    assert copy_tokens("RT @city_news: RT @bob Refugees   WELCOME here! https://t.co/Ab1 @ann") == \
        ("refugees", "welcome", "here")
    assert copy_tokens("refugees welcome here www.example.org/x") == ("refugees", "welcome", "here")
    assert copy_tokens("Mail me at me@example.org") != copy_tokens("Mail me at")  # not a mention


def test_no_two_queued_tweets_are_copies_and_the_most_uncertain_copy_is_kept():
    text = "Refugees are welcome in our city, we have room for everyone"
    pool = [
        tweet("orig", (0.40, 0.30, 0.20, 0.10), text),
        tweet("rt", (0.41, 0.30, 0.19, 0.10), f"RT @citynews: {text} https://t.co/x1"),
        tweet("shout", (0.40, 0.31, 0.19, 0.10), f"  {text.upper()}!!  @mayor"),
        tweet("plus-one-word", (0.42, 0.30, 0.18, 0.10), f"{text} today"),  # bigram Jaccard 10/11
        tweet("other", (0.50, 0.30, 0.10, 0.10), "Close the border now, no more visas"),
        tweet("neighbour", (0.55, 0.30, 0.10, 0.05), "Open the border now, more visas"),  # Jaccard 3/8: kept
    ]
    queue = build_queue("en", pool, 10)
    assert ids(queue) == ["shout", "other", "neighbour"]  # "shout": the copy with the smallest margin (0.91)
    assert queue.dropped_duplicates == 3 and queue.pool == 6
    strict = build_queue("en", pool, 10, similarity=0.95)  # one extra word is no longer a copy
    assert "plus-one-word" in ids(strict) and strict.dropped_duplicates == 2


def test_copy_index_finds_identical_and_similar_texts_only():
    index = CopyIndex(0.8)
    index.add("the minister will talk about visa rules on monday in the parliament")
    assert index.is_copy("RT @x: The minister will talk about visa rules on Monday in the parliament http://t.co/1")
    assert index.is_copy("the minister will talk about visa rules on monday in the parliament again")
    assert not index.is_copy("the minister will talk about football on monday")
    assert not index.is_copy("")  # nothing to compare: not a copy of a text with words
    index.add("")
    assert index.is_copy("@only_a_mention https://t.co/and-a-link")


# --- labeled tweets -----------------------------------------------------------------------------------------------


def test_labeled_tweets_are_skipped_counted_and_their_copies_dropped():
    pool = [tweet("done", (0.4, 0.4, 0.1, 0.1), "Deport them all and close the border now", labeled=True),
            tweet("rt-of-done", (0.4, 0.39, 0.11, 0.1), "RT @a: deport them all and close the border now"),
            tweet("known", (0.45, 0.35, 0.1, 0.1)),
            tweet("fresh", (0.5, 0.3, 0.1, 0.1))]
    queue = build_queue("en", pool, 5, labeled_ids={"known"})
    assert ids(queue) == ["fresh"]
    assert (queue.pool, queue.skipped_labeled, queue.dropped_duplicates) == (2, 2, 1)
    assert queue.summary() == ("en: queued 1 of 2 unlabeled tweet(s) in the pool; 2 already labeled, skipped; "
                               "1 near-duplicate(s) dropped")


# --- Label Studio ---------------------------------------------------------------------------------------------------


def test_the_labeling_config_offers_exactly_the_four_labels_and_names_what_results_refer_to():
    assert config_choices(label_config()) == [c.value for c in CATEGORIES]
    assert f'<Choices name="{FROM_NAME}" toName="{TO_NAME}"' in label_config()
    assert f'<Text name="{TO_NAME}" value="$text"' in label_config()
    # what the real instance wrote into its export refers to those names
    results = [r for task in json.loads(EXPORT.read_text()) for a in task["annotations"] for r in a["result"]]
    assert results and {(r["from_name"], r["to_name"], r["type"]) for r in results} == {(FROM_NAME, TO_NAME, "choices")}
    assert {r["value"]["choices"][0] for r in results} <= {c.value for c in CATEGORIES}


def test_the_queue_files_have_the_structure_the_real_instance_accepted(tmp_path):
    pool = [tweet("t1", (0.4, 0.35, 0.15, 0.1), "Flüchtlinge sind willkommen", lang="de"),
            tweet("t2", (0.1, 0.2, 0.3, 0.4), "Was für ein Wetter", lang="de")]
    written = write_queue_files(tmp_path / "queue.json", [build_queue("de", pool, 5)], "v7")
    assert [p.name for p in written] == ["queue.json", "queue.csv", "queue.label_config.xml"]
    tasks = json.loads((tmp_path / "queue.json").read_text())
    exported = json.loads(EXPORT.read_text())
    for task in tasks:
        assert set(task) == {"data", "predictions"}
        assert set(task["data"]) == set(exported[0]["data"])  # the fields the instance kept and exported
    # the instance attached each imported prediction to its annotation: same fields, same shape
    seen = next(a["prediction"] for t in exported for a in t["annotations"] if a["prediction"])
    prediction = tasks[0]["predictions"][0]
    assert set(prediction) <= set(seen) and seen["model_version"] == "v1"
    assert [set(r) for r in prediction["result"]] == [set(r) for r in seen["result"]]
    assert prediction["model_version"] == "v7" and prediction["score"] == pytest.approx(0.4)
    assert prediction["result"][0]["value"] == {"choices": ["pro-immigration"]}
    assert tasks[1]["data"] == {"text": "Was für ein Wetter", "tweet_id": "t2", "lang": "de"}
    assert (tmp_path / "queue.label_config.xml").read_text() == CONFIG_FILE.read_text()
    with open(tmp_path / "queue.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS) and [r["label"] for r in rows] == ["", ""]
    assert rows[0]["id"] == "t1" and rows[0]["uncertainty"] == "0.9500" and rows[0]["predicted"] == "pro-immigration"


def test_queue_paths():
    assert queue_paths("out/q.json") == (Path("out/q.json"), Path("out/q.csv"), Path("out/q.label_config.xml"))
    assert queue_paths("q.csv") == (None, Path("q.csv"), Path("q.label_config.xml"))
    with pytest.raises(QueueFileError, match="name a .json"):
        queue_paths("q.txt")


# --- labels import of an export -------------------------------------------------------------------------------------

#: What the annotator did in the real instance (benchmarks/label_studio_roundtrip.py PLAN): rt-de-1 was labeled
#: neutral, then pro-immigration; rt-de-3 was skipped; rt-en-4 and rt-es-2 were left alone.
EXPORTED_LABELS = {"rt-en-1": "anti-immigration", "rt-en-3": "neutral", "rt-de-1": "pro-immigration",
                   "rt-de-2": "anti-immigration", "rt-es-1": "pro-immigration", "rt-es-3": "neutral"}


def test_read_label_file_maps_the_real_export_to_labels_and_says_how_many_tasks_it_skipped():
    warnings: list[str] = []
    records = list(read_label_file(str(EXPORT), warnings.append))
    labels = [parse_label(r.value) for r in records]
    assert {label.tweet_id: label.label.value for label in labels} == EXPORTED_LABELS
    assert [r.key.decode() for r in records] == [label.tweet_id for label in labels]
    assert len(set(r.origin for r in records)) == 6
    assert {label.annotator for label in labels} == {"label-studio:1"}
    relabeled = next(label for label in labels if label.tweet_id == "rt-de-1")
    assert relabeled.labeled_at.isoformat() == "2026-12-02T02:49:27.598217+00:00"  # its later annotation
    assert relabeled.text == "Flüchtlinge sind hier willkommen, wir helfen gern" and relabeled.lang == "de"
    assert warnings == [f"{EXPORT}: Label Studio export: 6 annotated task(s); 3 without an annotation skipped"]


def _task(tweet_id, *annotations, data=None):
    return {"id": 1, "data": data if data is not None else {"text": "a text", "tweet_id": tweet_id, "lang": "en"},
            "annotations": list(annotations)}


def _annotation(choices, updated_at, cancelled=False, completed_by=7):
    return {"completed_by": completed_by, "was_cancelled": cancelled, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": updated_at,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": choices}}]}


def test_the_latest_annotation_by_time_wins_and_cancelled_ones_do_not_count():
    tasks = [
        _task("a", _annotation(["neutral"], "2026-01-03T00:00:00.5Z"),
              _annotation(["unrelated"], "2026-01-03T00:00:00Z")),  # listed last, but half a second earlier
        _task("b", _annotation(["neutral"], "2026-01-02T00:00:00Z"),
              _annotation([], "2026-01-05T00:00:00Z", cancelled=True)),
        _task("c", _annotation([], "2026-01-05T00:00:00Z", cancelled=True)),
        _task("d", _annotation(["neutral"], "2026-01-02T00:00:00Z", completed_by={"id": 3, "email": "ann@x.org"})),
        _task("e", _annotation(["unrelated"], "2026-01-03T00:00:00Z"),
              _annotation(["anti-immigration"], "2026-01-03T00:00:00.5Z")),  # later, though "." < "Z" as text
    ]
    out = dict(exported_labels(tasks))
    assert out[1]["label"] == "neutral" and out[1]["labeled_at"] == "2026-01-03T00:00:00.5Z"
    assert out[2]["label"] == "neutral" and out[2]["annotator"] == "label-studio:7"
    assert out[3] is None
    assert out[4]["annotator"] == "ann@x.org"
    assert out[5]["label"] == "anti-immigration"


def test_an_export_task_that_is_no_valid_label_reaches_the_consumer_and_is_refused_there(tmp_path):
    tasks = [_task("two", _annotation(["neutral", "unrelated"], "2026-01-02T00:00:00Z")),
             _task("odd", _annotation(["maybe"], "2026-01-02T00:00:00Z")),
             _task(None, _annotation(["neutral"], "2026-01-02T00:00:00Z"), data={"text": "no id", "lang": "en"}),
             _task("ok", _annotation(["neutral"], "2026-01-02T00:00:00Z"))]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    records = list(read_label_file(str(path)))
    assert len(records) == 4  # nothing dropped on the way: the consumer decides
    for record, field in zip(records[:3], ("label", "label", "tweet_id")):
        with pytest.raises(InvalidMessage, match=field):
            parse_label(record.value)
    assert parse_label(records[3].value).tweet_id == "ok"


def test_a_json_list_of_labels_imports_and_an_unlabeled_import_file_or_broken_json_imports_nothing(tmp_path):
    plain = tmp_path / "labels.json"
    plain.write_text('\n [{"id": 5, "text": "t", "lang": "en", "label": "neutral"}]')
    assert [parse_label(r.value).tweet_id for r in read_label_file(str(plain))] == ["5"]
    queue = tmp_path / "queue.json"
    write_queue_files(queue, [build_queue("en", [tweet("q1", (0.4, 0.3, 0.2, 0.1))], 1)], "v1")
    with pytest.raises(LabelFileError, match="nobody labeled yet"):
        list(read_label_file(str(queue)))
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1,')
    with pytest.raises(LabelFileError, match="not a valid JSON list.*nothing imported"):
        list(read_label_file(str(broken)))
    jsonl = tmp_path / "lines.json"  # a .json of JSON lines is still read line by line
    jsonl.write_text('{"id": "j1", "text": "t", "lang": "en", "label": "neutral"}\n'
                     '{"id": "j2", "text": "u", "lang": "en", "label": "unrelated"}\n')
    assert [r.key for r in read_label_file(str(jsonl))] == [b"j1", b"j2"]


def test_the_queue_csv_with_its_label_column_partly_filled_imports_the_labeled_rows(tmp_path):
    pool = [tweet(f"c{i}", (0.4 + i / 100, 0.3, 0.2, 0.1 - i / 100)) for i in range(3)]
    write_queue_files(tmp_path / "queue.csv", [build_queue("en", pool, 3)], "v1")
    with open(tmp_path / "queue.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[1][-1], rows[3][-1] = "anti-immigration", "unrelated"  # the analyst labels two of three
    with open(tmp_path / "queue.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    warnings: list[str] = []
    labels = [parse_label(r.value) for r in read_label_file(str(tmp_path / "queue.csv"), warnings.append)]
    assert [(x.tweet_id, x.label.value, x.lang) for x in labels] == [(rows[1][0], "anti-immigration", "en"),
                                                                      (rows[3][0], "unrelated", "en")]
    assert labels[0].text == rows[1][2] and labels[0].annotator == "import:queue.csv"
    assert warnings == [f"{tmp_path / 'queue.csv'}: 1 row(s) with a blank label skipped (not labeled yet)"]


def test_duration_argument():
    assert duration("24h") == timedelta(hours=24) and duration("7d") == timedelta(days=7)
    assert duration("90m") == timedelta(minutes=90) and duration("2W") == timedelta(weeks=2)
    for bad in ("7", "d", "-1d", "0h", "nand", "infd", "7y"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
