"""The drift measures on distributions whose values are computed by hand, the alarms a DriftMonitor keeps (each
crossing logged once, when it starts and when it clears), the Prometheus gauges and the monitor's line."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from shared.quantification.drift import (
    ALL_LANGUAGES, DriftMonitor, DriftRow, DriftThresholds, WindowStats, confidence_histogram, describe, js_distance,
    psi,
)
from shared.settings import SettingError, Settings
from shared.streaming.telemetry import Telemetry

LOGGER = "shared.quantification.drift"


def test_psi_of_known_mixes():
    assert psi([50, 50], [50, 50]) == 0.0
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 3
    assert psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3), abs=1e-12)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6), "shares work as counts do"
    # the four labels: pro 25% -> 40%, anti 25% -> 10%: 0.15 ln 1.6 - 0.15 ln 0.4 = 0.15 ln 4
    assert psi([25, 25, 25, 25], [40, 10, 25, 25]) == pytest.approx(0.207944, abs=1e-6)
    # an empty reference bin counts as epsilon (1e-4): -0.1 ln 0.9 + (0.1 - 1e-4) ln(0.1 / 1e-4)
    assert psi([100, 0], [90, 10]) == pytest.approx(0.700621, abs=1e-6)
    assert psi([90, 10], [100, 0]) == psi([100, 0], [90, 10]), "(w - r) ln(w / r) is symmetric"
    with pytest.raises(ValueError):
        psi([0, 0], [1, 1])


def test_js_distance_of_known_distributions():
    assert js_distance([3, 1], [6, 2]) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0), "disjoint: the largest distance, base 2"
    # m = (0.75, 0.25); KL(p||m) = log2(4/3) = 0.415037, KL(q||m) = 0.5 log2(2/3) + 0.5 log2(2) = 0.207519
    assert js_distance([1, 0], [0.5, 0.5]) == pytest.approx(math.sqrt((0.415037 + 0.207519) / 2), abs=1e-6)
    assert js_distance([1, 0], [0.5, 0.5]) == pytest.approx(0.557923, abs=1e-6)
    assert js_distance([0.5, 0.5], [1, 0]) == js_distance([1, 0], [0.5, 0.5]), "symmetric"


def test_confidence_histogram_has_ten_bins_on_a_quarter_to_one():
    # bins of 0.075 from 0.25: a bin holds its lower edge; 1.0 falls in the last one
    counts = confidence_histogram([0.25, 0.3249, 0.325, 0.5, 0.99, 1.0])
    assert counts.tolist() == [2, 1, 0, 1, 0, 0, 0, 0, 0, 2]
    stats = WindowStats.of(["anti-immigration", "anti-immigration", "neutral"], [0.45, 0.9, 0.6], low_confidence=0.5)
    assert stats.labels == (0, 2, 1, 0) and stats.n == 3 and stats.low_confidence == 1
    assert sum(stats.confidence) == 3 and stats.confidence[2] == 1 and stats.confidence[8] == 1


def _stats(mix: list[int], confidence: float = 0.9, low_share: float = 0.0) -> WindowStats:
    """Tweets of each label in CATEGORIES order, ``low_share`` of them at confidence 0.3 (bin 0, low), the rest at
    ``confidence``."""
    labels = [label for label, n in zip(("pro-immigration", "anti-immigration", "neutral", "unrelated"), mix)
              for _ in range(n)]
    low = round(len(labels) * low_share)
    return WindowStats.of(labels, [0.3] * low + [confidence] * (len(labels) - low), low_confidence=0.5)


BALANCED = _stats([25, 25, 25, 25])
MORE_PRO = _stats([70, 10, 10, 10])


def _alarms(result) -> set[tuple[str, str]]:
    return {row.key for row in result.rows if row.alarm}


def test_an_alarm_is_logged_once_when_it_starts_and_once_when_it_clears(caplog):
    monitor = DriftMonitor(DriftThresholds(), min_tweets=50)
    caplog.set_level(logging.INFO, logger=LOGGER)

    first = monitor.evaluate({"tr": BALANCED, "de": BALANCED}, {"tr": MORE_PRO, "de": BALANCED}, {"tr", "de"})
    assert _alarms(first) == {("tr", "label_psi")}
    assert [r.key for r in first.started] == [("tr", "label_psi")] and not first.cleared
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "drift alarm: tr label mix PSI" in warnings[0].getMessage()
    assert "(> 0.25)" in warnings[0].getMessage()
    # every judged (language, measure) has its row, and the global one
    assert {r.key for r in first.rows} == {(lang, m) for lang in ("tr", "de")
                                           for m in ("label_psi", "confidence_js", "low_confidence_rise")} | {
        (ALL_LANGUAGES, "unseen_language_share")}
    psi_tr = next(r for r in first.rows if r.key == ("tr", "label_psi"))
    assert psi_tr.value == pytest.approx(psi([25] * 4, [70, 10, 10, 10])) and psi_tr.threshold == 0.25
    assert (psi_tr.window_tweets, psi_tr.reference_tweets) == (100, 100)

    caplog.clear()
    again = monitor.evaluate({"tr": BALANCED, "de": BALANCED}, {"tr": MORE_PRO, "de": BALANCED}, {"tr", "de"})
    assert _alarms(again) == {("tr", "label_psi")}, "still on"
    assert not again.started and not again.cleared and not caplog.records, "and said only once"

    back = monitor.evaluate({"tr": BALANCED}, {"tr": BALANCED}, {"tr"})
    assert _alarms(back) == set() and [r.key for r in back.cleared] == [("tr", "label_psi")]
    (info,) = caplog.records
    assert info.levelno == logging.INFO and "drift alarm cleared: tr label mix PSI 0.00 (≤ 0.25)" in info.getMessage()
    caplog.clear()
    assert not monitor.evaluate({"tr": BALANCED}, {"tr": BALANCED}, {"tr"}).cleared and not caplog.records


def test_an_alarm_that_can_no_longer_be_judged_clears_with_a_row():
    monitor = DriftMonitor(min_tweets=50)
    monitor.evaluate({"tr": BALANCED}, {"tr": MORE_PRO})
    few = _stats([10, 2, 2, 2])  # 16 tweets: too few to judge
    result = monitor.evaluate({"tr": BALANCED}, {"tr": few})
    (cleared,) = result.cleared
    assert cleared.key == ("tr", "label_psi") and cleared.value is None and not cleared.alarm
    assert (cleared.window_tweets, cleared.reference_tweets) == (16, 100)
    assert {r.key for r in result.rows} == {("tr", "label_psi"), (ALL_LANGUAGES, "unseen_language_share")}
    assert monitor.alarms == set()


def test_a_restarted_monitor_does_not_repeat_an_alarm_that_is_already_on(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    monitor = DriftMonitor(alarms=[("tr", "label_psi")])
    result = monitor.evaluate({"tr": BALANCED}, {"tr": MORE_PRO})
    assert _alarms(result) == {("tr", "label_psi")} and not result.started and not caplog.records


def test_confidence_low_confidence_and_unseen_language_alarms():
    monitor = DriftMonitor(DriftThresholds(unseen_language_share=0.3), min_tweets=50)
    reference = {"en": _stats([25] * 4, low_share=0.1), "tr": BALANCED}
    window = {"en": _stats([25] * 4, confidence=0.45, low_share=0.1),  # 0.9 (bin 8) became 0.45 (bin 2, low)
              "tr": BALANCED, "sw": _stats([10, 10, 10, 10])}  # Swahili: never trained on, too few to judge alone
    result = monitor.evaluate(reference, window, training_languages={"en", "tr"})
    values = {r.key: r.value for r in result.rows}
    # bins 0/2/8: p = (0.1, 0, 0.9), q = (0.1, 0.9, 0), m = (0.1, 0.45, 0.45): each KL is 0.9 log2 2 = 0.9
    assert values[("en", "confidence_js")] == pytest.approx(math.sqrt(0.9))
    assert values[("en", "low_confidence_rise")] == pytest.approx(1.0 - 0.1)
    assert values[("tr", "confidence_js")] == 0.0 and values[("tr", "low_confidence_rise")] == 0.0
    assert values[(ALL_LANGUAGES, "unseen_language_share")] == pytest.approx(40 / 240)
    assert _alarms(result) == {("en", "confidence_js"), ("en", "low_confidence_rise")}
    assert ("sw", "label_psi") not in values, "a language without a reference is not judged"
    # without the adapter's training languages the global share is not judged
    unknown = DriftMonitor().evaluate(reference, window, None)
    assert next(r for r in unknown.rows if r.lang == ALL_LANGUAGES).value is None
    # and with fewer training languages it is
    narrow = DriftMonitor().evaluate(reference, window, {"tr"})
    assert next(r for r in narrow.rows if r.lang == ALL_LANGUAGES).alarm


def test_gauges_follow_the_judgements():
    telemetry = Telemetry()

    def sample(name: str, lang: str, measure: str):
        return telemetry.registry.get_sample_value(name, {"lang": lang, "measure": measure})

    telemetry.drift([DriftRow("tr", "label_psi", 0.41, 0.25, True, 120, 800),
                     DriftRow("de", "label_psi", 0.02, 0.25, False, 90, 700)])
    assert sample("stancestream_drift", "tr", "label_psi") == pytest.approx(0.41)
    assert sample("stancestream_drift_alarm", "tr", "label_psi") == 1
    assert sample("stancestream_drift_alarm", "de", "label_psi") == 0
    telemetry.drift([DriftRow("tr", "label_psi", None, 0.25, False, 10, 800),
                     DriftRow("de", "label_psi", 0.03, 0.25, False, 90, 700)])
    assert sample("stancestream_drift", "tr", "label_psi") is None, "not judged: no stale value"
    assert sample("stancestream_drift_alarm", "tr", "label_psi") is None
    assert sample("stancestream_drift", "de", "label_psi") == pytest.approx(0.03)


def test_the_monitor_shows_the_alarms_on_one_line():
    from rich.console import Console

    from services.views.monitor import render_snapshot
    from shared.store.queries.monitoring import MonitorSnapshot

    def shown(drift: list[dict]) -> str:
        console = Console(width=200, record=True)
        console.print(render_snapshot(MonitorSnapshot(300, 1.0, 10, 100.0, 200.0, drift=drift)))
        return console.export_text()

    assert "drift: none" in shown([])
    text = shown([{"lang": "tr", "measure": "label_psi", "value": 0.41, "threshold": 0.25},
                  {"lang": ALL_LANGUAGES, "measure": "unseen_language_share", "value": 0.3, "threshold": 0.2}])
    assert "drift: tr label mix PSI 0.41 (> 0.25); share of tweets in languages the adapter never saw 0.30 (> 0.20)" \
        in text
    assert describe("tr", "confidence_js", None, 0.2) == "tr confidence JS distance not judged"


def test_a_pinned_reference_is_read_and_a_malformed_one_refused_in_one_line():
    pinned = Settings(drift_reference="2026-11-01T00:00Z/2026-11-02T00:00+02:00").drift_reference_window
    assert [t.isoformat() for t in pinned] == ["2026-11-01T00:00:00+00:00", "2026-11-01T22:00:00+00:00"]
    assert Settings(drift_reference="2026-11-01/2026-11-02").drift_reference_window[0].tzinfo is not None
    assert Settings(drift_reference="").drift_reference is None
    for bad, why in [("2026-11-01T00:00Z", "is not START/END"), ("2026-11-01/yesterday", "END 'yesterday' is not"),
                     ("2026-11-02/2026-11-01", "START must be before END")]:
        with pytest.raises(SettingError, match=why) as info:
            Settings(drift_reference=bad)
        assert "\n" not in str(info.value) and str(info.value).startswith("STANCESTREAM_DRIFT_REFERENCE")


def test_drift_measures_on_random_mixes_stay_in_range():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p, q = rng.integers(0, 20, 4) + 1, rng.integers(0, 20, 4)
        q[0] += 1
        assert 0 <= js_distance(p, q) <= 1 and psi(p, q) >= 0
