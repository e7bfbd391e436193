"""A/B of the worker's batch bound (`STANCESTREAM_BATCH_TARGET_S`), measured as `stancestream bench` measures.

    .venv/bin/python benchmarks/batch_target_ab.py --targets 3,1.5,1 --rounds 2 --burst 800 --rates 30,38 \
        --out out/batch_target_ab.json

Each round runs every target once, alternating, each in its own process (a process opens one embedded ClickHouse):
an embedded stack with default settings but that batch target (served classifier, shipped adapter, cache off), then
with the bench's own offer (``services.bench.e2e._Offer``, results detected on ``tweets.classified``): (1) a backlog
of ``--burst`` distinct tweets of train.csv offered at once, tweets/s from first produce to last result; (2) for
each of ``--rates``, a ``--window-s`` window of steady offer judged by the bench's sustained rule (the lowest lag
over the last 10 s ≤ 2·r + 32, the second half delivered at ≥ 0.95·r), with its p50/p95 latency. Prints the
medians per target and their ratios to the first target.
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
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "train.csv"


def one_side(burst: int, rates: list[float], window_s: float) -> dict:
    from aiokafka import AIOKafkaProducer

    from services.bench.e2e import _Offer, _Results, distinct
    from services.stack.stack import Stack
    from shared.settings import Settings

    with open(DATA, encoding="utf-8", newline="") as handle:
        texts = distinct([row["text"] for row in csv.DictReader(handle)])

    async def main() -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), kafka_bootstrap=None, clickhouse_url=None, metrics_port=None)
            stack = await Stack(settings).start()
            stack.processor.cache = None  # the texts of the steady windows repeat the burst's
            producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0, acks=1)
            results = _Results(stack.settings)
            await producer.start()
            await results.start()
            offer = _Offer(stack, producer, results)
            row: dict = {"batch_target_s": settings.batch_target_s}
            try:
                await offer.run(texts[:64], None, "warm")
                row["backlog_tweets_per_s"] = (await offer.run(texts[:burst], None, "burst"))["throughput"]
                for rate in rates:
                    pool = [texts[i % len(texts)] for i in range(int(rate * window_s))]
                    window = await offer.run(pool, rate, f"r{rate}")
                    for key in ("tail_lag", "second_half_rate", "p50_s", "p95_s", "sustained"):
                        row[f"{key}@{rate:g}"] = window[key]
            finally:
                await results.stop()
                await producer.stop()
                await stack.stop()
        return row

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="3,1.5,1", help="batch targets in seconds, comma-separated; the first "
                                                             "is the one the others are compared with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burst", type=int, default=800)
    parser.add_argument("--rates", default="30", help="steady offers in tweets/s, comma-separated")
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if args.child:
        print(json.dumps(one_side(args.burst, rates, args.window_s)))
        return
    targets = args.targets.split(",")
    runs: dict[str, list[dict]] = {t: [] for t in targets}
    for round_ in range(args.rounds):
        for target in targets:
            child = subprocess.run(
                [sys.executable, __file__, "--child", "--burst", str(args.burst), "--rates", args.rates,
                 "--window-s", str(args.window_s)],
                cwd=Path(__file__).resolve().parents[1], env=os.environ | {"STANCESTREAM_BATCH_TARGET_S": target},
                capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"target {target}, round {round_ + 1} failed:\n{child.stderr[-3000:]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            runs[target].append(row)
            print(f"round {round_ + 1} target {target} s: {row}", flush=True)
    numeric = [k for k, v in runs[targets[0]][0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    medians = {t: {k: statistics.median(r[k] for r in rows) for k in numeric} for t, rows in runs.items()}
    sustained = {t: {k: sum(r[k] for r in rows) for k in rows[0] if k.startswith("sustained")}
                 for t, rows in runs.items()}
    first = medians[targets[0]]
    ratios = {t: {k: round(m[k] / first[k], 3) if first[k] else None for k in numeric} for t, m in medians.items()}
    summary = {"medians": medians, "sustained_rounds": sustained, "ratios_to_first": ratios}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"targets": targets, "rates": rates, "burst": args.burst,
                                        "window_s": args.window_s, "runs": runs} | summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
