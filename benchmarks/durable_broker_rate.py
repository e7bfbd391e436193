"""Produce and consume rates of the embedded broker, in memory and durable, in one run (docs/reliability.md).

    .venv/bin/python benchmarks/durable_broker_rate.py --n 5000 --size 300 --rounds 3

Each round starts a fresh broker of each storage (alternating), produces ``n`` messages of ``size`` bytes with
acks=all to one partition, then reads them all back from the start; medians over the rounds, and durable / memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.streaming.broker import EmbeddedBroker
from shared.streaming.topics import create_topic

TOPIC = "rate.check"


async def _round(bootstrap: str, n: int, size: int) -> dict[str, float]:
    await create_topic(bootstrap, TOPIC)
    payload = b"x" * size
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    start = time.perf_counter()
    deliveries = [await producer.send(TOPIC, payload, partition=0) for _ in range(n)]
    offsets = [d.offset for d in await asyncio.gather(*deliveries)]
    produced = time.perf_counter() - start
    await producer.stop()
    assert sorted(offsets) == list(range(n)), "offsets were shared or skipped"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    partition = TopicPartition(TOPIC, 0)
    consumer.assign([partition])
    await consumer.seek_to_beginning(partition)
    start, seen = time.perf_counter(), 0
    while seen < n:
        seen += len((await consumer.getmany(partition, timeout_ms=1000)).get(partition, []))
    consumed = time.perf_counter() - start
    await consumer.stop()
    return {"produce_per_s": n / produced, "consume_per_s": n / consumed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages per round (default 5000)")
    parser.add_argument("--size", type=int, default=300, help="bytes per message (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per storage (default 3)")
    parser.add_argument("--out", type=Path, help="write the numbers here as JSON")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"memory": [], "durable": []}
    for r in range(args.rounds):
        for storage in ("memory", "durable"):
            with tempfile.TemporaryDirectory() as scratch:
                with EmbeddedBroker(storage_dir=Path(scratch) / "broker" if storage == "durable" else None) as b:
                    row = asyncio.run(_round(b.bootstrap, args.n, args.size))
            rows[storage].append(row)
            print(f"round {r + 1} {storage:7s}: produce {row['produce_per_s']:8.0f} msg/s, "
                  f"consume {row['consume_per_s']:8.0f} msg/s", flush=True)
    medians = {s: {k: statistics.median(row[k] for row in rows[s]) for k in rows[s][0]} for s in rows}
    for key in ("produce_per_s", "consume_per_s"):
        ratio = medians["durable"][key] / medians["memory"][key]
        print(f"median {key}: memory {medians['memory'][key]:.0f}, durable {medians['durable'][key]:.0f} "
              f"({ratio:.3f}×)")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rounds": rows,
                                        "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
