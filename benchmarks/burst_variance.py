"""Consecutive bursts of the same 200 tweets through one embedded stack: how much does a burst's throughput vary?

    .venv/bin/python benchmarks/burst_variance.py 3

Why the bench's capacity search no longer starts at one burst's throughput (docs/benchmarks.md, "Capacity").
"""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from services.bench.e2e import _Offer, _Results
from services.bench.main import read_tweets
from services.stack.stack import Stack
from shared.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


async def main(n_bursts: int = 3, burst: int = 200) -> None:
    texts, _ = read_tweets(DATA, 400)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), kafka_bootstrap=None, clickhouse_url=None, metrics_port=None)
        stack = await Stack(settings).start()
        stack.processor.cache = None
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0, acks=1)
        results = _Results(stack.settings)
        await producer.start()
        await results.start()
        offer = _Offer(stack, producer, results)
        try:
            await offer.run(texts[:64], None, "warmup")
            for k in range(n_bursts):
                t = time.perf_counter()
                row = await offer.run(texts[:burst], None, f"b{k}")
                print(f"burst {k}: {row['throughput']:.2f} tweets/s ({time.perf_counter() - t:.1f} s)", flush=True)
        finally:
            await results.stop()
            await producer.stop()
            await stack.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
