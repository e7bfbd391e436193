"""The drift check against a real ClickHouse engine: the windows read from stored classifications (live tweets of
the active adapter; replays and other versions left out), judged, written to the ``drift`` table, and read back
by the monitor; with the default reference (the active adapter's first hours, cut where the window starts) and a
pinned one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from shared.messages import CATEGORIES
from shared.quantification.drift import ALL_LANGUAGES, DriftMonitor, WindowStats, js_distance, psi
from shared.quantification.drift_check import DriftConfig, check_drift, open_drift_monitor
from shared.settings import Settings
from shared.store.queries.adapters import insert_adapter_row
from shared.store.queries.drift import drift_alarms
from shared.store.sinks import CLASSIFICATION_COLUMNS

pytestmark = pytest.mark.clickhouse

NOW = datetime.now(timezone.utc).replace(microsecond=0)
PROMOTED = NOW - timedelta(hours=2)
BALANCED = [25, 25, 25, 25]
MORE_PRO = [70, 10, 10, 10]
def LANGUAGES(version: str) -> set[str]:  # what the active adapter was trained on
    return {"tr", "de"}


def _rows(prefix: str, lang: str, mix: list[int], start: datetime, version: str = "v1", confidence: float = 0.9,
          run: str = "", step_s: int = 20):
    """Tweets of each label (CATEGORIES order) classified one every ``step_s`` from ``start`` (within the hour),
    their label's probability ``confidence`` and the rest shared out."""
    rows, n = [], 0
    for k, count in enumerate(mix):
        label = CATEGORIES[k].value
        probs = [confidence if j == k else (1 - confidence) / 3 for j in range(4)]
        for _ in range(count):
            rows.append((f"{prefix}{n}", version, "tiny@0", lang, 0.9,
                         "unrelated" if label == "unrelated" else "immigration",
                         None if label == "unrelated" else label.split("-")[0], label, *probs,
                         start - timedelta(minutes=5), start + timedelta(seconds=step_s * (n % 150) + 1), 10.0, run))
            n += 1
    return rows


def _activate(store, version: str, at: datetime) -> None:
    insert_adapter_row(store, (version, None, f"/registry/{version}", "active", None, "{}", "test", at, at))


def _stream(store, second_half_tr: list[int], second_half_confidence: float = 0.9) -> None:
    """v1 active since two hours ago; an hour of tweets after the promotion (the reference) and the last hour (the
    window), Turkish as given, German the same mix in both; plus what the check must leave out."""
    _activate(store, "v1", PROMOTED)
    half = PROMOTED + timedelta(hours=1)
    for rows in (_rows("r-tr", "tr", BALANCED, PROMOTED), _rows("r-de", "de", BALANCED, PROMOTED),
                 _rows("w-tr", "tr", second_half_tr, half, confidence=second_half_confidence),
                 _rows("w-de", "de", BALANCED, half),
                 # a replay and another adapter version in the window with a very different German mix
                 _rows("rp-de", "de", [100, 0, 0, 0], half, run="replay-1"),
                 _rows("v0-de", "de", [0, 0, 0, 100], half, version="v0")):
        store.insert("classifications", rows, CLASSIFICATION_COLUMNS)


def _drift_rows(store) -> dict[tuple[str, str], dict]:
    return {(r["lang"], r["measure"]): r for r in store.query(
        "SELECT lang, measure, value, threshold, alarm, window_tweets, reference_tweets, adapter_version, "
        "reference_start, reference_end FROM drift FINAL").dicts()}


def test_a_label_mix_that_changes_half_way_raises_the_alarm_and_the_monitor_shows_it(clean_store):
    _stream(clean_store, MORE_PRO, second_half_confidence=0.45)
    config = DriftConfig.of(Settings(drift_window_s=3600))
    monitor = open_drift_monitor(clean_store, config)
    result = check_drift(clean_store, monitor, config, LANGUAGES, now=NOW)
    assert {r.key for r in result.started} == {("tr", "label_psi"), ("tr", "confidence_js"),
                                               ("tr", "low_confidence_rise")}

    rows = _drift_rows(clean_store)
    tr = rows[("tr", "label_psi")]
    assert tr["alarm"] == 1 and tr["threshold"] == 0.25 and tr["adapter_version"] == "v1"
    assert (tr["window_tweets"], tr["reference_tweets"]) == (100, 100), "the window's replay and v0 rows left out"
    assert tr["value"] == pytest.approx(psi(BALANCED, MORE_PRO), abs=1e-9)
    # ClickHouse bins the stored (Float32) confidences as the pure histogram does
    expected_js = js_distance(WindowStats.of(["x"], [np.float32(0.9)], 0.5).confidence,
                              WindowStats.of(["x"], [np.float32(0.45)], 0.5).confidence)
    assert rows[("tr", "confidence_js")]["value"] == pytest.approx(expected_js) == 1.0
    assert rows[("tr", "low_confidence_rise")]["value"] == pytest.approx(1.0)
    # the reference is the first hour after the promotion: cut where the window starts
    assert tr["reference_start"].replace(tzinfo=timezone.utc) == PROMOTED
    assert tr["reference_end"].replace(tzinfo=timezone.utc) == NOW - timedelta(hours=1)
    assert all(rows[("de", m)]["alarm"] == 0 for m in ("label_psi", "confidence_js", "low_confidence_rise"))
    assert rows[("de", "label_psi")]["value"] == pytest.approx(0.0, abs=1e-12)
    assert rows[(ALL_LANGUAGES, "unseen_language_share")]["value"] == 0.0

    alarms = drift_alarms(clean_store)
    # the largest excess first: 1.0 - 0.1, 1.0 - 0.2, 0.88 - 0.25
    assert [(a["lang"], a["measure"]) for a in alarms] == [("tr", "low_confidence_rise"), ("tr", "confidence_js"),
                                                           ("tr", "label_psi")]
    assert alarms[2]["value"] == pytest.approx(tr["value"]) and alarms[2]["threshold"] == 0.25
    # a restarted trainer starts from the table: the alarms are on already, nothing starts again
    restarted = open_drift_monitor(clean_store, config)
    again = check_drift(clean_store, restarted, config, LANGUAGES, now=NOW + timedelta(seconds=1))
    assert not again.started and not again.cleared
    # an hour later the stream has stopped: nothing to judge, the alarms clear, and a row says so
    later = check_drift(clean_store, restarted, config, LANGUAGES, now=NOW + timedelta(hours=1))
    assert {r.key for r in later.cleared} == {r.key for r in result.started}
    assert drift_alarms(clean_store) == []


def test_the_same_mix_in_both_halves_raises_no_alarm(clean_store):
    _stream(clean_store, BALANCED)
    config = DriftConfig.of(Settings())
    result = check_drift(clean_store, DriftMonitor(config.thresholds, config.min_tweets), config,
                         lambda version: None, now=NOW)
    assert not result.started
    rows = _drift_rows(clean_store)
    assert {lang for lang, _ in rows} == {"tr", "de", ALL_LANGUAGES}
    assert all(row["alarm"] == 0 for row in rows.values())
    assert all(rows[(lang, "label_psi")]["value"] == pytest.approx(0, abs=1e-12) for lang in ("tr", "de"))
    assert rows[(ALL_LANGUAGES, "unseen_language_share")]["value"] is None, "no training languages: not judged"
    assert drift_alarms(clean_store) == []


def test_too_few_tweets_are_not_judged_and_a_fresh_adapter_waits_for_its_reference(clean_store):
    _stream(clean_store, MORE_PRO)
    config = DriftConfig.of(Settings(drift_min_tweets=101))
    check_drift(clean_store, DriftMonitor(config.thresholds, config.min_tweets), config, LANGUAGES, now=NOW)
    assert set(_drift_rows(clean_store)) == {(ALL_LANGUAGES, "unseen_language_share")}
    # v2 promoted ten minutes ago: its reference is empty until its first window has passed
    clean_store.command("TRUNCATE TABLE drift")
    _activate(clean_store, "v2", NOW - timedelta(minutes=10))
    clean_store.insert("classifications", _rows("v2-tr", "tr", MORE_PRO, NOW - timedelta(minutes=9), "v2", step_s=5),
                       CLASSIFICATION_COLUMNS)
    config = DriftConfig.of(Settings())
    check_drift(clean_store, DriftMonitor(config.thresholds, config.min_tweets), config, LANGUAGES, now=NOW)
    rows = _drift_rows(clean_store)
    assert set(rows) == {(ALL_LANGUAGES, "unseen_language_share")}
    assert rows[(ALL_LANGUAGES, "unseen_language_share")]["adapter_version"] == "v2"
    assert rows[(ALL_LANGUAGES, "unseen_language_share")]["window_tweets"] == 100, "v2's tweets only"


def test_a_pinned_reference_window_is_used_instead(clean_store):
    _stream(clean_store, BALANCED)  # no drift against the first hour after the promotion ...
    last_week = NOW - timedelta(days=7)
    clean_store.insert("classifications", _rows("old-tr", "tr", MORE_PRO, last_week, version="v0"),
                       CLASSIFICATION_COLUMNS)  # ... but Turkish was mostly pro last week (under v0)
    pinned = f"{(last_week - timedelta(hours=1)).isoformat()}/{(last_week + timedelta(hours=1)).isoformat()}"
    config = DriftConfig.of(Settings(drift_reference=pinned))
    assert config.reference == (last_week - timedelta(hours=1), last_week + timedelta(hours=1))
    result = check_drift(clean_store, DriftMonitor(config.thresholds, config.min_tweets), config, LANGUAGES, now=NOW)
    assert {r.key for r in result.started} == {("tr", "label_psi")}
    rows = _drift_rows(clean_store)
    tr = rows[("tr", "label_psi")]
    assert tr["alarm"] == 1 and tr["value"] == pytest.approx(psi(MORE_PRO, BALANCED), abs=1e-9)
    assert tr["reference_tweets"] == 100 and tr["window_tweets"] == 100
    assert tr["reference_start"].replace(tzinfo=timezone.utc) == last_week - timedelta(hours=1)
    assert ("de", "label_psi") not in rows, "German has no tweets in the pinned window: not judged"
