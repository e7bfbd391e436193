"""How a durable partition's fetch slows as it holds more batches (docs/reliability.md).

    .venv/bin/python benchmarks/durable_fetch_growth.py --sizes 400,800,1200 --probes 3 --fetch-wait-ms 100
    .venv/bin/python benchmarks/durable_fetch_growth.py --sizes 1200,3000,6000 --probes 3 --commit

Tansu's s3 engine answers a fetch by listing every batch object of the partition and cuts the fetch off at the
consumer's fetch wait, so once the listing takes longer than the wait the consumer receives nothing more. One
durable broker, one partition; batches of one message are produced up to each size, then a consumer waiting at
the end (with the worker's fetch wait by default) times ``probes`` single messages from produce to receipt, or
reports that one never came within ``--give-up-s``. With ``--commit`` the consumer belongs to a group and commits
what it has been past, as the worker does, so the object store's retention deletes consumed batches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.streaming.broker import EmbeddedBroker
from shared.streaming.topics import create_topic

TOPIC = "fetch.growth"


async def _measure(bootstrap: str, records: Path, sizes: list[int], probes: int, wait_ms: int, give_up_s: float,
                   commit: bool, log) -> list[dict]:
    await create_topic(bootstrap, TOPIC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    partition = TopicPartition(TOPIC, 0)
    rows, held = [], 0
    try:
        for size in sizes:
            start = time.perf_counter()
            while held < size:  # one message per produce request: one batch object each
                await producer.send_and_wait(TOPIC, b"x" * 300, partition=0)
                held += 1
            fill_s = time.perf_counter() - start
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                        fetch_max_wait_ms=wait_ms, group_id=TOPIC if commit else None)
            await consumer.start()
            consumer.assign([partition])
            if commit:  # as if it had consumed everything so far
                await consumer.commit({partition: held})
            consumer.seek(partition, held)  # not seek_to_end: Tansu's s3 engine answers "latest" from the newest
            # last-modified second's first batch, up to a second of batches early (docs/reliability.md)
            latencies = []
            for _ in range(probes):
                sent = time.perf_counter()
                await producer.send_and_wait(TOPIC, b"probe", partition=0)
                held += 1
                got = []
                while not got and time.perf_counter() - sent < give_up_s:
                    got = (await consumer.getmany(partition, timeout_ms=1000)).get(partition, [])
                latencies.append(time.perf_counter() - sent if got else None)
                consumer.seek(partition, held)
                if commit and got:
                    await consumer.commit({partition: held})
            await consumer.stop()
            received = [s for s in latencies if s is not None]
            row = {"batches": held, "batches_on_disk": await _settled_count(records),
                   "received": f"{len(received)} of {probes}",
                   "produce_to_receipt_s": round(statistics.median(received), 4) if received else None,
                   "produce_per_s_while_filling": round((size - (rows[-1]["batches"] if rows else 0)) / fill_s, 1)}
            rows.append(row)
            took = (f"{row['produce_to_receipt_s'] * 1000:.0f} ms (median)" if received
                    else f"never within {give_up_s:.0f} s")
            log(f"{row['batches']:7d} batches ({row['batches_on_disk']} on disk): {row['received']} received, "
                f"produce → receipt {took}; produce {row['produce_per_s_while_filling']:.0f}/s while filling")
    finally:
        await producer.stop()
    return rows


async def _settled_count(records: Path, timeout_s: float = 10) -> int:
    """Batch objects on disk once the object store's trimming (which runs after each commit) has stopped."""
    deadline, previous = time.monotonic() + timeout_s, None
    while True:
        count = sum(1 for name in os.listdir(records) if name.endswith(".batch"))
        if count == previous or time.monotonic() > deadline:
            return count
        previous = count
        await asyncio.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="400,800,1200", help="batches held at each measurement, ascending")
    parser.add_argument("--probes", type=int, default=3, help="messages timed at each size (default 3)")
    parser.add_argument("--fetch-wait-ms", type=int, default=100,
                        help="the consumer's fetch wait (default 100, the worker's STANCESTREAM_FETCH_MAX_WAIT_MS)")
    parser.add_argument("--give-up-s", type=float, default=10, help="a probe not received by then never came")
    parser.add_argument("--commit", action="store_true",
                        help="consume in a group that commits, so that retention deletes consumed batches")
    parser.add_argument("--out", type=Path, help="write the rows here as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        storage = Path(scratch) / "broker"
        records = storage / "tansu/clusters/tansu_cluster/topics" / TOPIC / "partitions/0000000000/records"
        with EmbeddedBroker(storage_dir=storage) as broker:
            rows = asyncio.run(_measure(broker.bootstrap, records, sizes, args.probes, args.fetch_wait_ms,
                                        args.give_up_s, args.commit, lambda line: print(line, flush=True)))
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
