"""The worker's duplicate-id lookup against a real chDB: what is stored under an id, redeliveries included."""

from __future__ import annotations

import pytest

from shared.messages import Tweet
from shared.store.sinks import ClickHouseSink
from shared.streaming.processing import text_digest

pytestmark = pytest.mark.clickhouse


def _tweet(tweet_id: str, text: str) -> Tweet:
    return Tweet.model_validate({"id": tweet_id, "text": text, "created_at": "2026-11-01T00:00:00Z"})


def test_the_lookup_answers_each_stored_id_once_with_its_texts_digest(clean_store):
    sink = ClickHouseSink(clean_store)
    sink.write([_tweet("a", "first text"), _tweet("b", "second text")], [], [])
    sink.write([_tweet("a", "first text")], [], [])  # a redelivered batch: two unmerged rows for "a"
    assert clean_store.query("SELECT count() FROM tweets WHERE id = 'a'").scalar() == 2
    found = sink.stored_text_digests(["a", "b", "never-stored"])
    assert found == {"a": text_digest("first text"), "b": text_digest("second text")}
    assert sink.stored_text_digests([]) == {}
