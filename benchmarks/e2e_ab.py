"""A/B of the embedded stack end to end between checkouts of this repository or settings, measured the same way.

    .venv/bin/python benchmarks/e2e_ab.py --side old=/path/to/old --side new=. \
        --side new-1-thread=.:STANCESTREAM_TORCH_THREADS=1 --rounds 2 --out out/e2e_ab.json

A side is ``LABEL=CHECKOUT`` with optional ``:NAME=VALUE,...`` environment settings. Each round runs every side
once, alternating, each in its own process (a process opens one embedded ClickHouse): an embedded stack with that
checkout's code and its default settings (served classifier, shipped adapter) plus the side's, then (1) a backlog: ``--burst`` tweets offered at once, tweets/s from first produce to last row;
(2) a light load: ``--light-rate`` tweets/s for ``--light-s`` seconds, produce → queryable latency. Rows are
detected by polling ClickHouse every 0.1 s (the query exists in both versions), so both sides pay the same.
Prints medians per side and the ratios of every side to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


def one_side(checkout: Path, burst: int, light_rate: float, light_s: float) -> dict:
    """Runs inside the child process, with ``checkout`` first on sys.path."""
    import numpy as np

    from services.stack.stack import Stack
    from shared.settings import Settings
    from shared.store.queries.monitoring import classified_ids_with_prefix
    from shared.streaming.topics import Topics, physical

    with open(DATA, encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]

    async def offer(stack, producer, n: int, rate: float | None, tag: str) -> dict:
        prefix = f"ab-{uuid.uuid4().hex[:6]}-{tag}-"
        produced, seen = {}, {}

        async def poll():
            while len(seen) < n:
                for tweet_id in await asyncio.to_thread(classified_ids_with_prefix, stack.store, prefix):
                    seen.setdefault(tweet_id, time.time())
                await asyncio.sleep(0.1)

        poller = asyncio.create_task(poll())
        start = time.monotonic()
        for i in range(n):
            if rate and (delay := start + i / rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            tweet_id = f"{prefix}{i}"
            value = json.dumps({"id": tweet_id, "text": texts[(i * 7919 + len(tag)) % len(texts)],
                                "created_at": "2026-11-22T00:00:00Z"})
            produced[tweet_id] = time.time()
            await producer.send(physical(Topics.raw, stack.settings), value.encode(), key=tweet_id.encode())
        await producer.flush()
        await asyncio.wait_for(poller, timeout=120 + n)
        latencies = np.array([seen[k] - produced[k] for k in produced])
        return {"n": n, "tweets_per_s": n / (max(seen.values()) - min(produced.values())),
                "p50_s": float(np.percentile(latencies, 50)), "p95_s": float(np.percentile(latencies, 95))}

    async def main() -> dict:
        from aiokafka import AIOKafkaProducer

        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), kafka_bootstrap=None, clickhouse_url=None, metrics_port=None)
            stack = await Stack(settings).start()
            producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0)
            await producer.start()
            try:
                await offer(stack, producer, 32, None, "warm")
                backlog = await offer(stack, producer, burst, None, "burst")
                light = await offer(stack, producer, int(light_rate * light_s), light_rate, "light")
            finally:
                await producer.stop()
                await stack.stop()
        return {"backlog_tweets_per_s": backlog["tweets_per_s"], "light_p50_s": light["p50_s"],
                "light_p95_s": light["p95_s"]}

    return asyncio.run(main())


def _side(spec: str) -> tuple[str, Path, dict[str, str]]:
    label, _, rest = spec.partition("=")
    checkout, _, env = rest.partition(":")
    if not label or not checkout:
        raise argparse.ArgumentTypeError(f"a side is LABEL=CHECKOUT[:NAME=VALUE,...], got {spec!r}")
    return label, Path(checkout).resolve(), dict(item.split("=", 1) for item in env.split(",") if item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", action="append", required=True, type=_side, metavar="LABEL=CHECKOUT[:ENV]")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--light-rate", type=float, default=2.0)
    parser.add_argument("--light-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.child))
        print(json.dumps(one_side(args.child, args.burst, args.light_rate, args.light_s)))
        return
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in args.side}
    for round_ in range(args.rounds):
        for label, checkout, env in args.side:
            child = subprocess.run(
                [sys.executable, __file__, "--side", "x=.", "--child", str(checkout), "--burst", str(args.burst),
                 "--light-rate", str(args.light_rate), "--light-s", str(args.light_s)],
                cwd=checkout, env=os.environ | env, capture_output=True, text=True, check=True)
            row = json.loads(child.stdout.strip().splitlines()[-1])
            runs[label].append(row)
            print(f"round {round_ + 1} {label}: {row}", flush=True)
    medians = {label: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for label, rows in runs.items()}
    first = medians[args.side[0][0]]
    ratios = {label: {k: round(m[k] / first[k], 3) for k in first} for label, m in medians.items()}
    print(json.dumps({"medians": medians, "ratios_to_first": ratios}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"sides": [[label, str(c), env] for label, c, env in args.side],
                                        "runs": runs, "medians": medians, "ratios_to_first": ratios,
                                        "burst": args.burst, "light_rate": args.light_rate,
                                        "light_s": args.light_s}, indent=1) + "\n")


if __name__ == "__main__":
    main()
