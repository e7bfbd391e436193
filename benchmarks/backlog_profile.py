"""Where a backlog's time goes in the embedded stack: model-thread busy time, inserts, duplicate-id lookups.

    .venv/bin/python benchmarks/backlog_profile.py --n 240

An embedded stack with default settings (served classifier, cache off) gets ``--n`` tweets of test.csv at once;
the processor's and the sink's methods are wrapped with timers. Then the classifier alone on the same tweets, in
the same process, for comparison (docs/benchmarks.md, "Keeping up with a live feed").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from services.bench.main import read_tweets
from services.stack.stack import Stack
from shared.settings import Settings
from shared.store.sinks import ClickHouseSink
from shared.streaming.processing import TweetBatchProcessor
from shared.streaming.topics import Topics, physical

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"
spent = {"classify": 0.0, "write": 0.0, "lookup": 0.0}
batches: list[int] = []


def timed(cls, name: str, key: str) -> None:
    original = getattr(cls, name)

    def wrapper(self, *args):
        started = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            spent[key] += time.perf_counter() - started
            if key == "classify":
                batches.append(len(args[0].tweets))

    setattr(cls, name, wrapper)


async def offer(stack: Stack, producer, texts: list[str], prefix: str) -> None:
    goal = stack.stats.tweets + len(texts)
    for i, text in enumerate(texts):
        value = json.dumps({"id": f"{prefix}{i}", "text": text, "created_at": "2026-11-22T00:00:00Z"})
        await producer.send(physical(Topics.raw, stack.settings), value.encode(), key=f"{prefix}{i}".encode())
    await producer.flush()
    while stack.stats.tweets < goal:
        await asyncio.sleep(0.05)


async def profile(texts: list[str]) -> tuple[float, Stack]:
    from aiokafka import AIOKafkaProducer

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), kafka_bootstrap=None, clickhouse_url=None, metrics_port=None)
        stack = await Stack(settings).start()
        stack.processor.cache = None
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0)
        await producer.start()
        try:
            await offer(stack, producer, texts[:32], "warm-")
            for key in spent:
                spent[key] = 0.0
            batches.clear()
            started = time.perf_counter()
            await offer(stack, producer, texts[32:], "backlog-")
            return time.perf_counter() - started, stack
        finally:
            await producer.stop()
            await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=240)
    args = parser.parse_args()
    texts, _ = read_tweets(DATA, args.n + 32)
    timed(TweetBatchProcessor, "classify_parsed", "classify")
    timed(ClickHouseSink, "write", "write")
    timed(ClickHouseSink, "stored_text_digests", "lookup")
    wall, stack = asyncio.run(profile(texts))
    print(f"stack: {args.n / wall:.2f} tweets/s ({wall:.1f} s); model thread busy {spent['classify']:.1f} s "
          f"({spent['classify'] / wall:.0%}); inserts {spent['write']:.1f} s; lookups {spent['lookup']:.1f} s; "
          f"batches {batches}")
    started = time.perf_counter()
    stack.classifier.predict_proba(texts[32:])
    alone = time.perf_counter() - started
    print(f"classifier alone, same tweets: {args.n / alone:.2f} tweets/s ({alone:.1f} s)")


if __name__ == "__main__":
    main()
