"""The probabilities behind the ``label_shares`` table, read per time bucket and language, and its rows written."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from shared.store.base import Store

#: Bucket widths an analyst can ask for, as ClickHouse functions of the tweet's creation time.
GRANULARITIES = {"hour": "toStartOfHour", "day": "toStartOfDay", "week": "toMonday"}
LABEL_SHARE_COLUMNS = ("granularity", "bucket", "lang", "adapter_version", "label", "tweets", "counted_share",
                       "corrected_share", "corrected_low", "corrected_high", "estimator", "calibration",
                       "computed_at")


def bucket_probabilities(store: Store, granularity: str, since: datetime, adapter_version: str | None = None
                         ) -> dict[tuple[str, datetime, str], list[tuple[float, float, float, float]]]:
    """(adapter version, bucket, language) -> each live tweet's four probabilities, for tweets created since
    ``since`` (each (tweet, version) once: FINAL)."""
    bucket = GRANULARITIES[granularity]
    where = "replay_run = '' AND tweet_created_at >= {since:DateTime64(3, 'UTC')}"
    if adapter_version is not None:
        where += " AND adapter_version = {version:String}"
    rows = store.query(
        f"SELECT adapter_version, toDateTime({bucket}(tweet_created_at), 'UTC') AS bucket, lang, "
        f"p_pro, p_anti, p_neutral, p_unrelated FROM classifications FINAL WHERE {where} "
        "ORDER BY adapter_version, bucket, lang", {"since": since, "version": adapter_version or ""}).rows
    groups: dict[tuple[str, datetime, str], list[tuple[float, float, float, float]]] = {}
    for version, start, lang, *probs in rows:
        groups.setdefault((version, start, lang), []).append(tuple(probs))
    return groups


def window_probabilities(store: Store, window_s: int) -> dict[tuple[str, str], list[tuple[float, float, float, float]]]:
    """(adapter version, language) -> the four probabilities of each live tweet classified in the last
    ``window_s`` seconds (the monitor's window)."""
    rows = store.query(
        "SELECT adapter_version, lang, p_pro, p_anti, p_neutral, p_unrelated FROM classifications "
        "WHERE replay_run = '' AND classified_at >= now64(3) - toIntervalSecond({w:UInt32})", {"w": window_s}).rows
    groups: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for version, lang, *probs in rows:
        groups.setdefault((version, lang), []).append(tuple(probs))
    return groups


def write_label_shares(store: Store, rows: Sequence[Sequence]) -> None:
    if rows:
        store.insert("label_shares", rows, LABEL_SHARE_COLUMNS)


def read_label_shares(store: Store, granularity: str, since: datetime) -> list[dict]:
    return store.query(
        "SELECT bucket, lang, adapter_version, toString(label) AS label, tweets, counted_share, corrected_share, "
        "corrected_low, corrected_high, estimator FROM label_shares FINAL WHERE granularity = {g:String} "
        f"AND bucket >= {GRANULARITIES[granularity]}({{since:DateTime64(3, 'UTC')}}) "
        "ORDER BY bucket, lang, adapter_version, label", {"g": granularity, "since": since}).dicts()
