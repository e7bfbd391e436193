"""Where a backlog's time goes in the embedded stack: model-thread busy time, inserts, duplicate-id lookups.

    .venv/bin/python benchmarks/backlog_profile.py --n 240
    .venv/bin/python benchmarks/backlog_profile.py --n 240 --rate 4   # a steady offer instead of a burst
    .venv/bin/python benchmarks/backlog_profile.py --n 300 --rate 6 --paced-warm-up   # no burst first

An embedded stack with default settings (served classifier, cache off) gets 32 warm-up tweets at once, then
``--n`` tweets of test.csv at once (or ``--rate`` per second); the processor's and the sink's methods are wrapped
with timers, and the CPU time of each thread and child process (the broker) is read. Then the classifier alone on
the same batches, in the same process, for comparison (docs/benchmarks.md, "Keeping up with a live feed").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from idle_stack import threads
from services.bench.main import read_tweets
from services.stack.stack import Stack
from shared.settings import Settings
from shared.streaming.pacing import RatePacer
from shared.store.sinks import ClickHouseSink
from shared.streaming.processing import TweetBatchProcessor
from shared.streaming.topics import Topics, physical

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"
spent = {"classify": 0.0, "write": 0.0, "lookup": 0.0}
batches: list[list[str]] = []


def cpu_seconds() -> dict[str, float]:
    """CPU seconds of each thread of this process and of its children (the broker)."""
    return {name: cpu for name, (cpu, _) in threads().items()}


def timed(cls, name: str, key: str) -> None:
    original = getattr(cls, name)

    def wrapper(self, *args):
        started = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            spent[key] += time.perf_counter() - started
            if key == "classify":
                batches.append([tweet.text for tweet, _ in args[0].tweets])

    setattr(cls, name, wrapper)


async def offer(stack: Stack, producer, texts: list[str], prefix: str, rate: float | None = None) -> None:
    goal = stack.stats.tweets + len(texts)
    pacer = RatePacer(rate)
    for i, text in enumerate(texts):
        await pacer.wait(i)
        value = json.dumps({"id": f"{prefix}{i}", "text": text, "created_at": "2026-11-22T00:00:00Z"})
        await producer.send(physical(Topics.raw, stack.settings), value.encode(), key=f"{prefix}{i}".encode())
    await producer.flush()
    while stack.stats.tweets < goal:
        await asyncio.sleep(0.05)


async def profile(texts: list[str], rate: float | None, paced_warm_up: bool) -> tuple[float, Stack, dict[str, float]]:
    from aiokafka import AIOKafkaProducer

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), kafka_bootstrap=None, clickhouse_url=None, metrics_port=None)
        stack = await Stack(settings).start()
        stack.processor.cache = None
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0)
        await producer.start()
        try:
            await offer(stack, producer, texts[:32], "warm-", rate if paced_warm_up else None)
            for key in spent:
                spent[key] = 0.0
            batches.clear()
            cpu = cpu_seconds()
            started = time.perf_counter()
            await offer(stack, producer, texts[32:], "backlog-", rate)
            wall = time.perf_counter() - started
            used = {k: v - cpu.get(k, 0.0) for k, v in cpu_seconds().items()}
            return wall, stack, {k: v / wall for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0.01 * wall}
        finally:
            await producer.stop()
            await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--rate", type=float, default=None, help="tweets per second (default: all at once)")
    parser.add_argument("--paced-warm-up", action="store_true",
                        help="offer the 32 warm-up tweets at --rate too: a live feed that never comes in a burst")
    args = parser.parse_args()
    texts, _ = read_tweets(DATA, args.n + 32)
    timed(TweetBatchProcessor, "classify_parsed", "classify")
    timed(ClickHouseSink, "write", "write")
    timed(ClickHouseSink, "stored_text_digests", "lookup")
    wall, stack, cpu = asyncio.run(profile(texts, args.rate, args.paced_warm_up))
    busy = spent["classify"]
    print(f"stack: {args.n / wall:.2f} tweets/s ({wall:.1f} s); model thread busy {busy:.1f} s ({busy / wall:.0%}), "
          f"{args.n / busy:.2f} tweets/s while busy; inserts {spent['write']:.1f} s; lookups {spent['lookup']:.1f} s; "
          f"batches {[len(b) for b in batches]}")
    print("CPU per thread and child process (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    started = time.perf_counter()
    for batch in batches:
        stack.classifier.predict_proba(batch)
    alone = time.perf_counter() - started
    print(f"classifier alone, same batches: {args.n / alone:.2f} tweets/s ({alone:.1f} s)")


if __name__ == "__main__":
    main()
