"""Identical tweets classified once: copies share probabilities, every tweet keeps its place, a swap never reuses."""

from __future__ import annotations

import numpy as np

from shared.classifier.cache import ProbabilityCache, copy_key
from shared.streaming.processing import InboundMessage, TweetBatchProcessor


class CountingScorer:
    model_id, adapter_version = "counting@0", "v1"

    def __init__(self):
        self.calls: list[list[str]] = []

    def predict_proba(self, texts):
        self.calls.append(list(texts))
        # A different, text-dependent distribution per text, so a mix-up of rows would show.
        rows = [np.roll(np.array([0.7, 0.1, 0.1, 0.1]), len(t) % 4) for t in texts]
        return np.array(rows, dtype=np.float32)


def test_copy_key_ignores_retweet_prefixes_links_and_spacing_only():
    original = "Refugees welcome here https://t.co/abc123"
    assert copy_key("RT @someone: Refugees  welcome here\nhttps://t.co/zzz999") == copy_key(original)
    assert copy_key("rt @a: RT @b: " + original) == copy_key(original)
    assert copy_key("Refugees welcome HERE https://t.co/abc123") != copy_key(original)
    assert copy_key("Refugees not welcome here https://t.co/abc123") != copy_key(original)


def test_copies_are_scored_once_and_every_text_gets_its_own_row_in_order():
    scorer, cache = CountingScorer(), ProbabilityCache(100)
    texts = ["abc", "RT @x: abc", "de", "abc  ", "fghi"]
    got = cache.predict(scorer, texts)
    assert scorer.calls == [["abc", "de", "fghi"]]
    expected = scorer.predict_proba(["abc", "abc", "de", "abc", "fghi"])
    np.testing.assert_allclose(got, expected)
    again = cache.predict(scorer, ["de", "new text"])
    assert scorer.calls[-1] == ["new text"]
    np.testing.assert_allclose(again[0], expected[2])
    assert (cache.lookups, cache.hits) == (7, 3)


def test_another_adapter_version_or_a_full_cache_classifies_again():
    scorer, cache = CountingScorer(), ProbabilityCache(2)
    cache.predict(scorer, ["a", "b"])
    scorer.adapter_version = "v2"
    cache.predict(scorer, ["a"])
    assert scorer.calls[-1] == ["a"]
    cache.predict(scorer, ["c"])  # evicts the least recently used ("b" of v1)
    scorer.adapter_version = "v1"
    cache.predict(scorer, ["b"])
    assert scorer.calls[-1] == ["b"] and len(cache) == 2


def test_the_processor_counts_copies_and_writes_a_row_per_tweet():
    scorer = CountingScorer()
    processor = TweetBatchProcessor(scorer, cache=ProbabilityCache(100))
    values = [f'{{"id": "t{i}", "text": "{text}", "created_at": "2026-11-01T00:00:00Z"}}'.encode()
              for i, text in enumerate(["Refugees welcome", "RT @a: Refugees welcome", "Close the border"])]
    result = processor.classify([InboundMessage(v, "tweets.raw", 0, i) for i, v in enumerate(values)])
    assert [c.tweet_id for c in result.classifications] == ["t0", "t1", "t2"]
    assert result.copies == 1 and len(scorer.calls) == 1
    assert result.classifications[0].probabilities == result.classifications[1].probabilities


def test_the_bench_copies_are_copies_by_the_cache_s_rule():
    import random

    from services.bench.e2e import copies_of

    texts = ["Refugees welcome https://t.co/abc and https://t.co/def", "Close the border now", "  spaced   text "]
    mixed = copies_of(texts, random.Random(1))
    assert len(mixed) == 6 and len(set(mixed)) == 6  # every copy differs from its original as text
    assert sorted(copy_key(t) for t in mixed) == sorted(copy_key(t) for t in texts * 2)


def test_the_bench_all_different_burst_has_no_copies():
    from services.bench.e2e import distinct

    texts = ["Close the border", "RT @x: Close the border", "Refugees welcome", "Close  the border", "Open it"]
    assert distinct(texts) == ["Close the border", "Refugees welcome", "Open it"]


def test_the_bench_copies_burst_is_half_copies_of_originals_from_across_the_all_different_one():
    import random

    from services.bench.e2e import copies_of

    unique = [f"tweet number {i} https://t.co/abc{i}" if i % 3 else f"tweet number {i}" for i in range(40)]
    burst = copies_of(unique[::2], random.Random(0))
    keys = [copy_key(text) for text in burst]
    assert len(burst) == 40 and sorted(set(keys)) == sorted(copy_key(t) for t in unique[::2])
    assert all(keys.count(key) == 2 for key in keys)  # each original once, and one copy of it
    assert sum(text in unique for text in burst) == 20  # the copies differ from their originals as text
