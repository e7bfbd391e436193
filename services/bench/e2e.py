"""(d) End to end: Kafka → worker → ClickHouse at fixed offered rates, latency from produce to queryable row.

An embedded stack (Tansu, chDB, the worker with the default classifier) runs in this process. For each offered
rate, ``per_rate`` tweets are produced on a fixed schedule; a poller queries ClickHouse every ``poll_s`` and
notes when each tweet's row first appears. Latency = that moment − the moment the tweet was handed to the
producer, so it includes batching, classification, the insert and the polling granularity.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import numpy as np

from shared.settings import Settings
from shared.streaming.pacing import RatePacer
from shared.store.queries.monitoring import classified_ids_with_prefix
from services.stack.stack import Stack
from shared.streaming.topics import Topics, physical


async def run_e2e(settings: Settings, texts: list[str], rates: list[str], per_rate: int, log,
                  poll_s: float = 0.1) -> list[dict]:
    from aiokafka import AIOKafkaProducer

    stack = await Stack(settings).start(status=lambda m: log(f"  e2e: {m}"))
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0, acks=1)
    await producer.start()
    topic = physical(Topics.raw, stack.settings)
    results = []
    try:
        await _offer(stack, producer, topic, texts, "warmup", 32, None, poll_s)  # model and caches warm
        for rate in rates:
            offered = None if rate == "max" else float(rate)
            row = await _offer(stack, producer, topic, texts, f"r{rate}", per_rate, offered, poll_s)
            results.append({"offered": rate} | row)
            log(f"  e2e {rate:>4}/s: {row['throughput']:5.2f} tweets/s  p50 {row['p50_s']:.2f} s  "
                f"p95 {row['p95_s']:.2f} s  p99 {row['p99_s']:.2f} s  ({row['n']} tweets)")
    finally:
        await producer.stop()
        await stack.stop()
    return results


async def _offer(stack: Stack, producer, topic: str, texts: list[str], tag: str, n: int, rate: float | None,
                 poll_s: float) -> dict:
    prefix = f"bench-{uuid.uuid4().hex[:6]}-{tag}-"
    produced: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = asyncio.Event()

    async def poll() -> None:
        while len(seen) < n:
            ids = await asyncio.to_thread(classified_ids_with_prefix, stack.store, prefix)
            now = time.time()
            for tweet_id in ids:
                seen.setdefault(tweet_id, now)
            await asyncio.sleep(poll_s)
        done.set()

    poller = asyncio.create_task(poll())
    pacer = RatePacer(rate)
    for i in range(n):
        await pacer.wait(i)
        tweet_id = f"{prefix}{i}"
        value = json.dumps({"id": tweet_id, "text": texts[i % len(texts)], "created_at": "2026-11-22T00:00:00Z"})
        produced[tweet_id] = time.time()
        await producer.send(topic, value.encode(), key=tweet_id.encode())
    await producer.flush()
    await asyncio.wait_for(done.wait(), timeout=60 + n / 2)
    await poller
    latencies = np.array([seen[k] - produced[k] for k in produced])
    span = max(seen.values()) - min(produced.values())
    return {"n": n, "throughput": round(n / span, 3), "p50_s": round(float(np.percentile(latencies, 50)), 3),
            "p95_s": round(float(np.percentile(latencies, 95)), 3),
            "p99_s": round(float(np.percentile(latencies, 99)), 3), "max_s": round(float(latencies.max()), 3)}
