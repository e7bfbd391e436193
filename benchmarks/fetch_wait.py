"""How long a message takes from producer to consumer through the embedded broker, per ``fetch_max_wait_ms``.

    .venv/bin/python benchmarks/fetch_wait.py            # 1500 (Faust's fixed value), 500, 100

One message every 0.37 s, 20 of them, one partition; prints p50 and max per setting (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.streaming.broker import EmbeddedBroker
from shared.streaming.topics import create_topic


async def measure(bootstrap: str, topic: str, wait_ms: int, n: int = 20) -> list[float]:
    await create_topic(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms,
                                auto_offset_reset="earliest", group_id=None)
    await producer.start()
    await consumer.start()
    latencies: list[float] = []

    async def consume() -> None:
        async for record in consumer:
            latencies.append(time.time() - float(record.value.decode()))
            if len(latencies) >= n:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(2)  # the consumer is fetching
    for _ in range(n):
        await (await producer.send(topic, str(time.time()).encode()))
        await asyncio.sleep(0.37)
    await asyncio.wait_for(task, 30)
    await consumer.stop()
    await producer.stop()
    return sorted(latencies)


def main() -> None:
    waits = [int(w) for w in sys.argv[1:]] or [1500, 500, 100]
    with EmbeddedBroker() as broker:
        for wait_ms in waits:
            lat = asyncio.run(measure(broker.bootstrap, f"wait{wait_ms}", wait_ms))
            print(f"fetch_max_wait_ms={wait_ms}: p50 {lat[len(lat) // 2] * 1000:.0f} ms  max {lat[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
