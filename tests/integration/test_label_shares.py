"""The label_shares table in a real ClickHouse engine: counted and corrected shares per bucket and language, each
adapter version corrected with its own calibration, a recomputation replacing its rows, and the monitor's
window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from shared.messages import CATEGORIES
from shared.quantification.estimators import Calibration
from shared.quantification.live import refresh_label_shares, window_shares
from shared.store.sinks import CLASSIFICATION_COLUMNS

pytestmark = pytest.mark.clickhouse

# Every pro tweet looks a little more anti than pro to this classifier; the calibration says so.
BEHAVIOUR = np.array([[0.40, 0.50, 0.05, 0.05], [0.05, 0.85, 0.05, 0.05], [0.05, 0.10, 0.80, 0.05],
                      [0.02, 0.03, 0.05, 0.90]])
CALIBRATION = Calibration.measure(BEHAVIOUR[np.repeat(np.arange(4), 10)], np.repeat(np.arange(4), 10), "hand-made")


def _rows(prefix: str, lang: str, counts: list[int], version: str, created: datetime, run: str = ""):
    now = datetime.now(timezone.utc)
    rows, n = [], 0
    for true, count in enumerate(counts):
        for _ in range(count):
            p = BEHAVIOUR[true]
            label = CATEGORIES[int(p.argmax())].value
            rows.append((f"{prefix}{n}", version, "tiny@0", lang, 0.9,
                         "unrelated" if label == "unrelated" else "immigration",
                         None if label == "unrelated" else label.split("-")[0], label, *map(float, p),
                         created + timedelta(minutes=n % 50), now, 10.0, run))
            n += 1
    return rows


def test_corrected_shares_per_bucket_and_language(clean_store):
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    clean_store.insert("classifications", _rows("it", "it", [30, 10, 10, 50], "v1", day + timedelta(hours=3)),
                       CLASSIFICATION_COLUMNS)
    clean_store.insert("classifications", _rows("tr", "tr", [5, 40, 15, 40], "v1", day + timedelta(hours=5)),
                       CLASSIFICATION_COLUMNS)
    clean_store.insert("classifications", _rows("x", "en", [10, 10, 10, 10], "v0", day + timedelta(hours=5)),
                       CLASSIFICATION_COLUMNS)  # a version without calibration: counted only
    clean_store.insert("classifications", _rows("rp", "it", [0, 50, 0, 0], "v1", day, run="replay-1"),
                       CLASSIFICATION_COLUMNS)  # replays are not the live stream

    calibrations = {"v1": CALIBRATION}
    for _ in range(2):  # a recomputation replaces the bucket's rows
        groups = refresh_label_shares(clean_store, calibrations.get, "day", day - timedelta(days=1), resamples=50,
                                      estimator="pacc")  # exact on these hand-made probabilities
    assert groups == 3
    rows = clean_store.query(
        "SELECT lang, adapter_version, toString(label), tweets, counted_share, corrected_share, corrected_low, "
        "corrected_high, estimator FROM label_shares FINAL WHERE granularity = 'day' ORDER BY lang, label").rows
    assert len(rows) == 12
    by = {(r[0], r[2]): r for r in rows}
    italian_anti = by[("it", "anti-immigration")]
    assert italian_anti[3] == 100
    assert italian_anti[4] == pytest.approx(0.40, abs=1e-6), "counting: the 30 pro + 10 anti predicted anti"
    assert italian_anti[5] == pytest.approx(0.10, abs=0.01), "corrected: the true 10%"
    assert italian_anti[6] <= italian_anti[5] <= italian_anti[7] and italian_anti[8] == "pacc"
    assert by[("tr", "anti-immigration")][5] == pytest.approx(0.40, abs=0.01)
    english = by[("en", "anti-immigration")]
    assert english[1] == "v0" and english[5] is None and english[8] == "cc"
    assert clean_store.query("SELECT count() FROM label_shares").scalar() == 24, "two refreshes were written"


def test_monitor_window_is_corrected_only_for_one_calibrated_version(clean_store):
    now = datetime.now(timezone.utc)
    clean_store.insert("classifications", _rows("w", "it", [30, 10, 10, 50], "v1", now), CLASSIFICATION_COLUMNS)
    clean_store.insert("classifications", _rows("a", "de", [10, 10, 10, 10], "v1", now), CLASSIFICATION_COLUMNS)
    clean_store.insert("classifications", _rows("b", "de", [10, 10, 10, 10], "v2", now), CLASSIFICATION_COLUMNS)
    shares = window_shares(clean_store, {"v1": CALIBRATION, "v2": CALIBRATION}.get, 600, resamples=50,
                           estimator="pacc")
    assert set(shares) == {"it"}, "German spans two adapter versions in the window"
    share, low, high = shares["it"]["anti-immigration"]
    assert share == pytest.approx(0.10, abs=0.01) and low <= share <= high
