"""The trainer service's drift check: the reference and the current window read from the store, judged by a
``DriftMonitor`` (shared/quantification/drift.py), written to the ``drift`` table, and handed to Prometheus.

The current window is the last ``window_s`` seconds of live tweets classified by the active adapter. The reference
is, by default, the first ``reference_hours`` of live tweets that adapter classified after it became active, cut
where the current window starts so that the two never overlap (for a fresh adapter the reference grows until it
is complete, and nothing is judged before it holds enough tweets). A pinned reference is taken as it is, whichever
adapter classified it: pinning a period before a promotion compares the new adapter's stream with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Collection

from shared.classifier.adapters import read_adapter_metadata
from shared.classifier.langid import normalize_lang
from shared.quantification.drift import (
    CONFIDENCE_EDGES, DriftMonitor, DriftResult, DriftRow, DriftThresholds, WindowStats,
)
from shared.quantification.periodic import periodically
from shared.settings import Settings
from shared.store.base import Store
from shared.store.queries.drift import active_adapter, drift_alarms, window_counts, write_drift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftConfig:
    window_s: int = 3600
    reference_hours: float = 24
    reference: tuple[datetime, datetime] | None = None  # pinned
    min_tweets: int = 50
    low_confidence: float = 0.5
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @classmethod
    def of(cls, settings: Settings) -> "DriftConfig":
        return cls(settings.drift_window_s, settings.drift_reference_hours, settings.drift_reference_window,
                   settings.drift_min_tweets, settings.low_confidence,
                   DriftThresholds(settings.drift_max_psi, settings.drift_max_js,
                                   settings.drift_max_low_confidence_rise, settings.drift_max_unseen_share))


def adapter_training_languages(adapter_dir: Path) -> frozenset[str] | None:
    """The languages an adapter was trained on: those of its dev metrics (the dev split is stratified by language),
    narrowed to ``--train-languages`` when it was trained on fewer (the dev split keeps them all). None: it does
    not say (no dev metrics, e.g. a refit on all the data)."""
    metadata = read_adapter_metadata(adapter_dir)
    languages = {normalize_lang(code) for code in (metadata.get("dev_metrics") or {}).get("per_language") or {}}
    if not languages:
        return None
    only = (metadata.get("hyperparameters") or {}).get("train_languages") or ""
    if only.strip():
        languages &= {normalize_lang(code) for code in only.split(",") if code.strip()}
    return frozenset(languages)


def reference_window(config: DriftConfig, active: tuple[str, datetime] | None, now: datetime
                     ) -> tuple[datetime, datetime, str | None] | None:
    """(start, end, the adapter version its tweets are read for, None: any) of the reference; None: there is none
    (no pinned window and no active adapter)."""
    if config.reference is not None:
        return config.reference[0], config.reference[1], None
    if active is None:
        return None
    version, since = active
    end = min(since + timedelta(hours=config.reference_hours), now - timedelta(seconds=config.window_s))
    return since, max(since, end), version


def _stats(counts: dict[str, tuple[dict[str, int], dict[int, int], int]]) -> dict[str, WindowStats]:
    return {lang: WindowStats.from_counts(labels, bins, low) for lang, (labels, bins, low) in counts.items()}


def open_drift_monitor(store: Store, config: DriftConfig) -> DriftMonitor:
    """A monitor that starts from the alarms the ``drift`` table has on."""
    return DriftMonitor(config.thresholds, config.min_tweets,
                        alarms=[(row["lang"], row["measure"]) for row in drift_alarms(store)])


def check_drift(store: Store, monitor: DriftMonitor, config: DriftConfig,
                training_languages_of: Callable[[str], Collection[str] | None],
                now: datetime | None = None) -> DriftResult:
    """One evaluation: read both windows, judge them, write the rows to ``drift``; the monitor's result."""
    now = now or datetime.now(timezone.utc)
    active = active_adapter(store)
    version = active[0] if active else None
    reference = reference_window(config, active, now)
    ref_stats = {}
    if reference is not None:
        ref_stats = _stats(window_counts(store, reference[0], reference[1], reference[2], CONFIDENCE_EDGES,
                                         config.low_confidence))
    window = _stats(window_counts(store, now - timedelta(seconds=config.window_s), now, version, CONFIDENCE_EDGES,
                                  config.low_confidence))
    languages = None
    if version is not None:
        try:
            languages = training_languages_of(version)
        except Exception as exc:  # an unreadable adapter directory costs the unseen-language measure only
            log.warning("drift: the training languages of %s are unknown: %s", version, exc)
    result = monitor.evaluate(ref_stats, window, languages)
    start, end = (reference[0], reference[1]) if reference is not None else (None, None)
    write_drift(store, [(now, row.lang, row.measure, row.value, row.threshold, int(row.alarm), row.window_tweets,
                         row.reference_tweets, version or "", start, end) for row in result.rows])
    return result


async def watch_drift(store: Store, config: DriftConfig,
                      training_languages_of: Callable[[str], Collection[str] | None], interval_s: float,
                      publish: Callable[[list[DriftRow]], None] | None = None) -> None:
    """Every ``interval_s``, check drift and ``publish`` the rows (the trainer's Prometheus gauges). ``store`` must
    be this loop's own connection: a check runs in a thread beside the trainer's cycles."""
    monitor: DriftMonitor | None = None

    def check() -> None:
        nonlocal monitor
        if monitor is None:
            monitor = open_drift_monitor(store, config)
        result = check_drift(store, monitor, config, training_languages_of)
        if publish is not None:
            publish(result.rows)

    await periodically("drift check", interval_s, check)
