"""Every query of docs/queries.md, run against the embedded store with known data, results checked by hand."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.store.sinks import CLASSIFICATION_COLUMNS, DEAD_LETTER_COLUMNS, TWEET_COLUMNS

pytestmark = pytest.mark.clickhouse

DOC = (Path(__file__).resolve().parents[2] / "docs" / "queries.md").read_text()
QUERIES = dict(re.findall(r"^### (Q\d+)\..*?```sql\n(.*?)```", DOC, flags=re.S | re.M))
UTC = timezone.utc
LIVE_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
REPLAY_AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
WEEK1_EN, WEEK2_EN = datetime(2026, 11, 3, 9, 5, tzinfo=UTC), datetime(2026, 11, 10, 9, 5, tzinfo=UTC)
WEEK1_DE, WEEK2_DE = datetime(2026, 11, 3, 12, 5, tzinfo=UTC), datetime(2026, 11, 10, 12, 5, tzinfo=UTC)
SPIKE = datetime(2026, 11, 10, 20, 5, tzinfo=UTC)
LABELS = {"pro": "pro-immigration", "anti": "anti-immigration", "neutral": "neutral", "unrelated": "unrelated"}

# (tweet id, language, label, posted at, confidence): what v1 said live
LIVE = [("e1", "en", "anti", WEEK1_EN, 0.9), ("e2", "en", "anti", WEEK1_EN, 0.9), ("e3", "en", "pro", WEEK1_EN, 0.9),
        ("e4", "en", "neutral", WEEK1_EN, 0.9), ("e5", "en", "unrelated", WEEK1_EN, 0.9),
        ("e6", "en", "anti", WEEK2_EN, 0.9), ("e7", "en", "anti", WEEK2_EN, 0.3), ("e8", "en", "anti", WEEK2_EN, 0.9),
        ("e9", "en", "pro", WEEK2_EN, 0.4),
        ("d1", "de", "anti", WEEK1_DE, 0.9), ("d2", "de", "pro", WEEK1_DE, 0.45),
        ("d3", "de", "pro", WEEK2_DE, 0.9), ("d4", "de", "pro", WEEK2_DE, 0.9)]
LIVE += [(f"s{i}", "en", "unrelated", SPIKE, 0.9) for i in range(8)]  # an evening burst of unrelated tweets
# v2 replayed the first English week (run rp1) and changed its mind on e1 only
REPLAY = [("e1", "en", "neutral", WEEK1_EN, 0.9)] + [row for row in LIVE[1:5]]


def _row(tweet_id, lang, label, posted, confidence, version, classified, latency, run=""):
    name = LABELS[label]
    rest = (1 - confidence) / 3
    probs = [confidence if name == full else rest for full in LABELS.values()]
    topic = "unrelated" if label == "unrelated" else "immigration"
    stance = None if label == "unrelated" else label
    return (tweet_id, version, "tiny@0", lang, 0.99, topic, stance, name, *probs, posted, classified, latency, run)


@pytest.fixture(scope="module")
def known_store(store):
    from conftest import DATA_TABLES

    for table in DATA_TABLES:
        store.command(f"TRUNCATE TABLE IF EXISTS {table}")
    live = [_row(*r, "v1", LIVE_AT + timedelta(seconds=i), latency=100.0 * (i + 1)) for i, r in enumerate(LIVE)]
    replay = [_row(*r, "v2", REPLAY_AT + timedelta(seconds=i), latency=5.0, run="rp1") for i, r in enumerate(REPLAY)]
    store.insert("classifications", live, CLASSIFICATION_COLUMNS)
    store.insert("classifications", replay, CLASSIFICATION_COLUMNS)
    store.insert("tweets", [(r[0], f"text of {r[0]}", r[3], r[1], None, None, "test", LIVE_AT) for r in LIVE],
                 TWEET_COLUMNS)
    store.insert("labels", [(t, f"text of {t}", lang, LABELS[label], "ann", LIVE_AT, LIVE_AT)
                            for t, lang, label in (("e1", "en", "anti"), ("e7", "en", "anti"), ("d2", "de", "anti"))],
                 ("tweet_id", "text", "lang", "label", "annotator", "labeled_at", "ingested_at"))
    now = datetime.now(UTC)
    letters = [("tweets.raw", 0, 1, "not JSON: Expecting value", "x", now - timedelta(hours=1)),
               ("tweets.raw", 0, 2, "not JSON: Expecting ','", "y", now - timedelta(hours=2)),
               ("tweets.labels", 1, 7, "invalid label: label: Input should be 'neutral'", "z", now - timedelta(hours=3)),
               ("tweets.raw", 1, 3, "not JSON: old", "w", now - timedelta(days=2))]
    store.insert("dead_letters", [row + (f"kafka:{row[0]}:{row[1]}:{row[2]}",) for row in letters],
                 DEAD_LETTER_COLUMNS[:7])
    store.insert("adapters", [("v1", None, "/r/v1", "retired", None, "{}", "replaced by v2", datetime(2026, 11, 1, tzinfo=UTC),
                               datetime(2026, 11, 15, tzinfo=UTC)),
                              ("v2", "v1", "/r/v2", "active", "v1", "{}", "gate passed", datetime(2026, 11, 15, tzinfo=UTC),
                               datetime(2026, 11, 15, 0, 0, 1, tzinfo=UTC))],
                 ("version", "parent", "path", "status", "replaced", "metrics", "reason", "created_at", "updated_at"))
    return store


def _run(store, number: str, **params):
    return store.query(QUERIES[number], params).rows


def test_queries_doc_has_at_least_eight_queries():
    assert len(QUERIES) >= 8 and list(QUERIES) == [f"Q{i}" for i in range(1, len(QUERIES) + 1)]


def test_queries_q1_stance_share_per_language_per_day(known_store):
    d1, d2 = date(2026, 11, 3), date(2026, 11, 10)
    assert _run(known_store, "Q1") == [
        ("de", d1, "pro", 1, 0.5), ("de", d1, "anti", 1, 0.5), ("de", d2, "pro", 2, 1.0),
        # e1 is counted with its latest classification (v2: neutral)
        ("en", d1, "pro", 1, 0.25), ("en", d1, "anti", 1, 0.25), ("en", d1, "neutral", 2, 0.5),
        ("en", d2, "pro", 1, 0.25), ("en", d2, "anti", 3, 0.75)]


def test_queries_q2_anti_share_week_over_week(known_store):
    monday = date(2026, 11, 9)
    assert _run(known_store, "Q2") == [("de", monday, 0.5, 0.0, -0.5), ("en", monday, 0.25, 0.75, 0.5)]


def test_queries_q3_adapter_disagreement_matrix(known_store):
    expected = [("pro-immigration", "pro-immigration", 1), ("anti-immigration", "anti-immigration", 1),
                ("anti-immigration", "neutral", 1), ("neutral", "neutral", 1), ("unrelated", "unrelated", 1)]
    assert _run(known_store, "Q3", a="v1", b="v2", run="rp1") == expected
    assert _run(known_store, "Q3", a="v1", b="v2", run="") == expected
    assert _run(known_store, "Q3", a="v1", b="v2", run="another-run") == []


def test_queries_q4_low_confidence_unlabeled_tweets(known_store):
    # e7 (0.3) and d2 (0.45) are below 0.5 too, but already labeled.
    assert _run(known_store, "Q4", max_confidence=0.5) == [("en", "e9", 0.4, "pro-immigration", "text of e9")]


def test_queries_q5_volume_spikes(known_store):
    # 8 tweets in the 20:00 hour against 4 in the previous 24 hours (4 / 24 per hour).
    assert _run(known_store, "Q5", version="v1") == [(datetime(2026, 11, 10, 20, 0), "en", 8, 0.17)]


def test_queries_q6_hourly_label_mix_from_the_rollup(known_store):
    hour = datetime(2026, 11, 3, 9, 0)
    assert _run(known_store, "Q6", version="v2") == [
        (hour, "en", "pro-immigration", 1, 0.9), (hour, "en", "anti-immigration", 1, 0.9),
        (hour, "en", "neutral", 2, 0.9), (hour, "en", "unrelated", 1, 0.9)]


def test_queries_q7_dead_letters_by_failure(known_store):
    assert [r[:3] for r in _run(known_store, "Q7")] == [("tweets.raw", "not JSON", 2),
                                                        ("tweets.labels", "invalid label", 1)]


def test_queries_q8_accuracy_on_human_labels(known_store):
    assert _run(known_store, "Q8") == [("v1", "de", 1, 0.0), ("v1", "en", 2, 1.0), ("v2", "en", 1, 0.0)]


def test_queries_q9_live_latency_per_hour(known_store):
    # 21 live rows with latencies 100, 200, …, 2100 ms; the replay's rows are not live.
    assert _run(known_store, "Q9") == [(datetime(2026, 11, 20, 10, 0), 21, 1100.0, 2000.0)]


def test_queries_q10_adapter_timeline(known_store):
    rows = _run(known_store, "Q10")
    assert [r[:4] for r in rows] == [("v1", "retired", None, None), ("v2", "active", "v1", "v1")]


def test_queries_q11_corrected_shares_read_the_latest_computation(known_store):
    from shared.store.queries.shares import LABEL_SHARE_COLUMNS

    day, earlier, later = datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)
    rows = [("day", day, "en", "v1", "anti-immigration", 5, 0.4, 0.3, 0.2, 0.45, "pacc", "dev split", earlier),
            ("day", day, "en", "v1", "anti-immigration", 6, 0.5, 0.35, 0.25, 0.5, "pacc", "dev split", later),
            ("day", day, "en", "v1", "pro-immigration", 6, 0.2, 0.3, 0.1, 0.4, "pacc", "dev split", later),
            ("hour", day, "en", "v1", "anti-immigration", 6, 0.9, 0.9, 0.9, 0.9, "pacc", "dev split", later),
            ("day", day, "de", "v0", "anti-immigration", 2, 0.5, None, None, None, "cc", "", later)]
    known_store.insert("label_shares", rows, LABEL_SHARE_COLUMNS)
    result = [(r[0].date(), *r[1:]) for r in _run(known_store, "Q11")]
    assert result == [(day.date(), "de", "v0", 2, 0.5, None, None, None),
                      (day.date(), "en", "v1", 6, 0.5, 0.35, 0.25, 0.5)]
