"""The cache's effect without Kafka: the worker's batch processor on N different tweets, then on N/2 of them plus a
copy of each (the bench's ``copies_of``), each with an empty cache, in batches of 128.

    .venv/bin/python benchmarks/copies_speedup.py --n 200
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from services.bench.e2e import copies_of
from services.bench.main import read_tweets
from shared.classifier.cache import ProbabilityCache
from shared.classifier.model import StanceClassifier
from shared.settings import Settings
from shared.streaming.processing import InboundMessage, TweetBatchProcessor

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


def rate(processor: TweetBatchProcessor, texts: list[str]) -> float:
    messages = [InboundMessage(json.dumps({"id": f"t{i}", "text": t, "created_at": "2026-11-22T00:00:00Z"}).encode(),
                               "bench", 0, i) for i, t in enumerate(texts)]
    started = time.perf_counter()
    for at in range(0, len(messages), 128):
        processor.classify(messages[at: at + 128])
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    texts, _ = read_tweets(DATA, args.n)
    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    classifier.predict_proba(texts[:16])  # warm-up
    unique = rate(TweetBatchProcessor(classifier, cache=ProbabilityCache(settings.cache_entries)), texts)
    copied = rate(TweetBatchProcessor(classifier, cache=ProbabilityCache(settings.cache_entries)),
                  copies_of(texts[: args.n // 2], random.Random(7)))
    print(f"{unique:.2f} tweets/s all different, {copied:.2f} with half copies: {copied / unique:.2f}x")


if __name__ == "__main__":
    main()
