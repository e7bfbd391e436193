"""How a durable partition's backlog of single-message batches drains, with the fetch wait fixed and adapting.

    .venv/bin/python benchmarks/durable_backlog.py --backlogs 1500,4000 --fetch-wait-ms 100

Tansu's s3 engine lists every batch of a partition on each fetch and answers empty once the listing outlasts the
consumer's fetch wait (docs/reliability.md), so a backlog longer than the wait can list never drains with a fixed
wait. For each backlog size: a fresh durable broker, that many single-message produces, then a group consumer
reads from the start and commits as it goes (so retention trims), once with the wait fixed and once adapting as
the worker's does (``shared.streaming.fetch_wait``); each reports how much it read within ``--give-up-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.streaming.broker import EmbeddedBroker
from shared.streaming.topics import create_topic
from shared.streaming.fetch_wait import FetchWait, behind

TOPIC = "backlog"


async def _fill(bootstrap: str, backlog: int) -> float:
    await create_topic(bootstrap, TOPIC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    start = time.perf_counter()
    try:
        for i in range(backlog):  # one produce request per message: one batch object each
            await producer.send_and_wait(TOPIC, b"x" * 300, partition=0)
    finally:
        await producer.stop()
    return time.perf_counter() - start


async def _drain(bootstrap: str, group: str, backlog: int, wait_ms: int, adapt: bool, give_up_s: float) -> dict:
    partition = TopicPartition(TOPIC, 0)
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms)
    await consumer.start()
    wait, read, start, first_s, largest_wait = FetchWait(wait_ms), 0, time.perf_counter(), None, wait_ms
    try:
        while read < backlog and time.perf_counter() - start < give_up_s:
            got = (await consumer.getmany(partition, timeout_ms=1000)).get(partition, [])
            if got:
                read += len(got)
                first_s = first_s or time.perf_counter() - start
                await consumer.commit()
            if adapt:
                consumer._fetcher._fetch_max_wait_ms = wait.observe(len(got), behind(consumer, [partition]))
                largest_wait = max(largest_wait, wait.ms)
    finally:
        await consumer.stop()
    took = time.perf_counter() - start
    return {"wait": "adapting" if adapt else "fixed", "read": read, "of": backlog,
            "drained_s": round(took, 2) if read == backlog else None,
            "first_received_s": round(first_s, 2) if first_s else None, "largest_wait_ms": largest_wait}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlogs", default="1500,4000", help="backlog sizes in batches (default 1500,4000)")
    parser.add_argument("--fetch-wait-ms", type=int, default=100,
                        help="the base fetch wait (default 100, the worker's STANCESTREAM_FETCH_MAX_WAIT_MS)")
    parser.add_argument("--give-up-s", type=float, default=60, help="stop reading a backlog after this long")
    parser.add_argument("--out", type=Path, help="write the rows here as JSON")
    args = parser.parse_args()
    rows = []
    for backlog in (int(size) for size in args.backlogs.split(",")):
        for adapt in (False, True):  # a fresh broker each: the first drain's commits would trim the second's
            with tempfile.TemporaryDirectory() as scratch, \
                    EmbeddedBroker(storage_dir=Path(scratch) / "broker") as broker:
                fill_s = asyncio.run(_fill(broker.bootstrap, backlog))
                row = asyncio.run(_drain(broker.bootstrap, "drain", backlog, args.fetch_wait_ms, adapt,
                                         args.give_up_s))
            rows.append(row | {"produce_per_s": round(backlog / fill_s, 1)})
            drained = f"drained in {row['drained_s']} s" if row["drained_s"] else \
                f"read {row['read']} of {backlog} in {args.give_up_s:.0f} s"
            print(f"{backlog:6d} batches, wait {row['wait']:8s}: {drained}; first records after "
                  f"{row['first_received_s']} s; largest wait {row['largest_wait_ms']} ms", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
