"""Corrected label shares of the live stream: per time bucket, language and adapter version, from the stored
probabilities, written to the ``label_shares`` table. Each adapter version is corrected with its own calibration
(a promotion brings a new one); a version without one gets counted shares only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import numpy as np

from shared.messages import CATEGORIES
from shared.quantification.estimators import DEFAULT, Calibration, bootstrap, estimate
from shared.quantification.periodic import periodically
from shared.store.base import Store
from shared.store.queries.shares import bucket_probabilities, window_probabilities, write_label_shares

#: What a scheduled refresh recomputes: each granularity's buckets of tweets created in this many days.
REFRESH_DAYS = {"hour": 2, "day": 2, "week": 14}


def corrected_shares(probs: np.ndarray, calibration: Calibration, estimator: str, resamples: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The corrected shares and their 95% percentile bootstrap interval, widened to contain the estimate: on a
    few tweets a non-linear estimator's resamples can all fall on one side of it, and an interval that excludes
    the number shown beside it would mislead more than a slightly wider one."""
    shares = estimate(estimator, probs, calibration)
    low, high = bootstrap(probs, lambda p: estimate(estimator, p, calibration), resamples=resamples)
    return shares, np.minimum(low, shares), np.maximum(high, shares)


def refresh_label_shares(store: Store, calibration_of: Callable[[str], Calibration | None], granularity: str,
                         since: datetime, resamples: int = 200, estimator: str = DEFAULT) -> int:
    """Recompute the buckets of tweets created since ``since``; returns the groups written."""
    now = datetime.now(timezone.utc)
    rows, calibrations = [], {}
    groups = bucket_probabilities(store, granularity, since)
    for (version, bucket, lang), probs in groups.items():
        if version not in calibrations:
            calibrations[version] = calibration_of(version)
        calibration = calibrations[version]
        probs = np.asarray(probs, dtype=np.float64)
        counted = estimate("cc", probs, None)
        corrected = low = high = None
        if calibration is not None:
            corrected, low, high = corrected_shares(probs, calibration, estimator, resamples)
        for k, label in enumerate(CATEGORIES):
            rows.append((granularity, bucket, lang, version, label.value, len(probs), float(counted[k]),
                         None if corrected is None else float(corrected[k]),
                         None if low is None else float(low[k]), None if high is None else float(high[k]),
                         estimator if calibration is not None else "cc",
                         calibration.source if calibration is not None else "", now))
    write_label_shares(store, rows)
    return len(groups)


def window_shares(store: Store, calibration_of: Callable[[str], Calibration | None], window_s: int,
                  resamples: int = 100, estimator: str = DEFAULT) -> dict[str, dict[str, list[float]]]:
    """The monitor's corrected shares: language -> label -> [share, low, high] over the last ``window_s``
    seconds, for languages whose tweets in the window were all classified by one calibrated adapter version
    (a window that spans a promotion mixes two behaviours and is left uncorrected until it has passed)."""
    by_lang: dict[str, list] = {}
    for (version, lang), probs in window_probabilities(store, window_s).items():
        by_lang.setdefault(lang, []).append((version, probs))
    out: dict[str, dict[str, list[float]]] = {}
    for lang, versions in by_lang.items():
        if len(versions) != 1 or (calibration := calibration_of(versions[0][0])) is None:
            continue
        probs = np.asarray(versions[0][1], dtype=np.float64)
        shares, low, high = corrected_shares(probs, calibration, estimator, resamples)
        out[lang] = {label.value: [round(float(shares[k]), 4), round(float(low[k]), 4), round(float(high[k]), 4)]
                     for k, label in enumerate(CATEGORIES)}
    return out


async def refresh_shares(store: Store, calibration_of: Callable[[str], Calibration | None],
                         interval_s: float, estimator: str = DEFAULT) -> None:
    """Every ``interval_s``, recompute the recent buckets of ``label_shares``. ``store`` must be this loop's
    own connection: a refresh runs in a thread beside the trainer's cycles."""
    def refresh() -> None:
        now = datetime.now(timezone.utc)
        for granularity, days in REFRESH_DAYS.items():
            refresh_label_shares(store, calibration_of, granularity, now - timedelta(days=days), estimator=estimator)

    await periodically("label_shares refresh", interval_s, refresh)
