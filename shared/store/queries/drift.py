"""The drift check's reads (the active adapter, each window's counts per language) and the ``drift`` table."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from shared.store.base import Store, as_utc_datetime

DRIFT_COLUMNS = ("computed_at", "lang", "measure", "value", "threshold", "alarm", "window_tweets",
                 "reference_tweets", "adapter_version", "reference_start", "reference_end")


def active_adapter(store: Store) -> tuple[str, datetime] | None:
    """The active version and when it became active (its latest status change: a promotion, seed or rollback)."""
    rows = store.query("SELECT version, updated_at FROM adapters FINAL WHERE status = 'active' "
                       "ORDER BY updated_at DESC LIMIT 1").rows
    return (rows[0][0], as_utc_datetime(rows[0][1])) if rows else None


def window_counts(store: Store, start: datetime, end: datetime, adapter_version: str | None,
                  confidence_edges: Sequence[float], low_confidence: float
                  ) -> dict[str, tuple[dict[str, int], dict[int, int], int]]:
    """Language -> (tweets per label, tweets per confidence bin, tweets below ``low_confidence``) of the live
    tweets classified in [start, end) (by ``adapter_version`` unless None; each (tweet, version) once: FINAL).
    A tweet's bin is the number of inner ``confidence_edges`` at or below its highest probability."""
    where = ("replay_run = '' AND classified_at >= {start:DateTime64(3, 'UTC')} "
             "AND classified_at < {end:DateTime64(3, 'UTC')}")
    if adapter_version is not None:
        where += " AND adapter_version = {version:String}"
    rows = store.query(
        "WITH greatest(p_pro, p_anti, p_neutral, p_unrelated) AS confidence "
        "SELECT lang, toString(label) AS label_value, arrayCount(e -> confidence >= e, {edges:Array(Float64)}) AS bin, "
        "count() AS tweets, countIf(confidence < {low:Float64}) AS low "
        f"FROM classifications FINAL WHERE {where} GROUP BY lang, label_value, bin",
        {"start": start, "end": end, "version": adapter_version or "", "edges": list(confidence_edges[1:-1]),
         "low": low_confidence}).rows
    out: dict[str, tuple[dict[str, int], dict[int, int], int]] = {}
    for lang, label, bin_, tweets, low in rows:
        labels, bins, below = out.get(lang, ({}, {}, 0))
        labels[label] = labels.get(label, 0) + int(tweets)
        bins[int(bin_)] = bins.get(int(bin_), 0) + int(tweets)
        out[lang] = (labels, bins, below + int(low))
    return out


def write_drift(store: Store, rows: Sequence[Sequence[Any]]) -> None:
    """Judgements, their values in ``DRIFT_COLUMNS`` order."""
    if rows:
        store.insert("drift", rows, DRIFT_COLUMNS)


def drift_alarms(store: Store) -> list[dict[str, Any]]:
    """The (lang, measure) pairs whose latest judgement has the alarm on, with that judgement: lang, measure, value,
    threshold, window_tweets, reference_tweets, computed_at; the largest excess first."""
    return store.query(
        "SELECT lang, measure, latest.1 AS value, latest.2 AS threshold, latest.3 AS window_tweets, "
        "latest.4 AS reference_tweets, last_at AS computed_at FROM ("
        "SELECT lang, measure, argMax(tuple(value, threshold, window_tweets, reference_tweets, alarm), computed_at) "
        "AS latest, max(computed_at) AS last_at FROM drift FINAL GROUP BY lang, measure) "
        "WHERE latest.5 = 1 ORDER BY value - threshold DESC, lang, measure").dicts()
