"""The hourly rollup analysts read is exact: redeliveries, retries and re-feeds never add to it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.store.sinks import CLASSIFICATION_COLUMNS

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 11, 5, 9, 10, tzinfo=timezone.utc)


def _rows(ids, version, classified_at, label="anti-immigration", run=""):
    return [(i, version, "tiny@0", "en", 0.9, "immigration", "anti", label, 0.1, 0.7, 0.1, 0.1,
             T0 + timedelta(minutes=40 * n), classified_at, 12.0, run) for n, i in enumerate(ids)]


def test_hourly_rollup_equals_the_deduplicated_count_after_repeated_writes(clean_store):
    ids = [f"r{i}" for i in range(10)]
    first = _rows(ids, "v1", T0 + timedelta(hours=1))
    clean_store.insert("classifications", first, CLASSIFICATION_COLUMNS)
    clean_store.insert("classifications", first[3:], CLASSIFICATION_COLUMNS)  # a redelivered batch
    # a re-feed classified later, and one tweet's label flipped on the re-run (another batch composition)
    again = _rows(ids[:4], "v1", T0 + timedelta(hours=2))
    again[0] = again[0][:7] + ("neutral",) + again[0][8:]
    clean_store.insert("classifications", again, CLASSIFICATION_COLUMNS)
    clean_store.insert("classifications", _rows(ids[:5], "v2", T0 + timedelta(hours=3), run="rp"),
                       CLASSIFICATION_COLUMNS)  # a replay with another adapter version

    written = clean_store.query("SELECT count() FROM classifications").scalar()
    exact = clean_store.query("SELECT count() FROM classifications FINAL").scalar()
    rollup = clean_store.query("SELECT sum(tweets) FROM classifications_hourly").scalar()
    assert written == 26 and exact == 15
    assert rollup == exact
    per_version = dict(clean_store.query(
        "SELECT adapter_version, sum(tweets) FROM classifications_hourly GROUP BY adapter_version").rows)
    assert per_version == {"v1": 10, "v2": 5}
    labels = dict(clean_store.query("SELECT toString(label), sum(tweets) FROM classifications_hourly"
                                    " WHERE adapter_version = 'v1' GROUP BY label").rows)
    assert labels == {"anti-immigration": 9, "neutral": 1}  # the latest classification of r0 counts, once
