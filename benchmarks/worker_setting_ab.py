"""A/B of one worker setting (default `batch_target_s`), measured as `stancestream bench` measures.

    .venv/bin/python benchmarks/worker_setting_ab.py --targets 3,1.5,1 --rounds 2 --burst 800 --rates 30,38 \
        --out out/batch_target_ab.json
    .venv/bin/python benchmarks/worker_setting_ab.py --setting batch_fill_s --values 0,0.5 --rounds 2 \
        --rates "" --capacity-from 46 --out out/batch_fill_ab.json

Each round runs every value once, alternating, each in its own process (a process opens one embedded ClickHouse):
an embedded stack with default settings but that value (served classifier, shipped adapter, cache off), then with
the bench's own offer (``services.bench.e2e._Offer``, results detected on ``tweets.classified``): (1) a backlog of
``--burst`` distinct tweets of train.csv offered at once, tweets/s from first produce to last result; (2) for each
of ``--rates``, a ``--window-s`` window of steady offer judged by the bench's sustained rule (the lowest lag over
the last 10 s ≤ 2·r + 32, the second half delivered at ≥ 0.95·r), with its p50/p95 latency; (3) with
``--capacity-from R``, the bench's capacity search (``search_capacity``: down the 0.95 grid from R, R the ceiling).
Prints the medians per value and their ratios to the first value.
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


def one_side(setting: str, burst: int, rates: list[float], window_s: float, capacity_from: float | None) -> dict:
    from aiokafka import AIOKafkaProducer

    from services.bench.e2e import _Offer, _Results, distinct, search_capacity
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
            row: dict = {setting: getattr(settings, setting)}
            try:
                await offer.run(texts[:64], None, "warm")
                row["backlog_tweets_per_s"] = (await offer.run(texts[:burst], None, "burst"))["throughput"]
                for rate in rates:
                    pool = [texts[i % len(texts)] for i in range(int(rate * window_s))]
                    window = await offer.run(pool, rate, f"r{rate}")
                    for key in ("tail_lag", "lag_slope", "second_half_rate", "p50_s", "p95_s", "sustained"):
                        row[f"{key}@{rate:g}"] = window[key]
                if capacity_from:
                    windows: list[dict] = []

                    async def sustained(rate: float) -> bool:
                        pool = [texts[i % len(texts)] for i in range(int(rate * window_s))]
                        window = await offer.run(pool, rate, f"r{rate:.1f}")
                        windows.append({k: window.get(k) for k in ("offered", "sustained", "tail_lag", "lag_slope",
                                                                   "second_half_rate", "second_half_sustained",
                                                                   "p50_s", "p95_s")})
                        return window["sustained"]

                    row["capacity"] = await search_capacity(sustained, capacity_from, capacity_from)
                    row["capacity_windows"] = windows
            finally:
                await results.stop()
                await producer.stop()
                await stack.stop()
        return row

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", default="batch_target_s", help="a worker setting (`stancestream settings`)")
    parser.add_argument("--values", "--targets", dest="values", default="3,1.5,1",
                        help="its values, comma-separated; the first is the one the others are compared with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burst", type=int, default=800)
    parser.add_argument("--rates", default="30", help="steady offers in tweets/s, comma-separated (\"\": none)")
    parser.add_argument("--capacity-from", type=float, help="also search the capacity down from this rate")
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    if args.child:
        print(json.dumps(one_side(args.setting, args.burst, rates, args.window_s, args.capacity_from)))
        return
    values = args.values.split(",")
    variable = f"STANCESTREAM_{args.setting.upper()}"
    runs: dict[str, list[dict]] = {v: [] for v in values}
    for round_ in range(args.rounds):
        for value in values:
            child = subprocess.run(
                [sys.executable, __file__, "--child", "--setting", args.setting, "--burst", str(args.burst),
                 "--rates", args.rates, "--window-s", str(args.window_s)]
                + (["--capacity-from", str(args.capacity_from)] if args.capacity_from else []),
                cwd=Path(__file__).resolve().parents[1], env=os.environ | {variable: value},
                capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"{args.setting} {value}, round {round_ + 1} failed:\n{child.stderr[-3000:]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            runs[value].append(row)
            print(f"round {round_ + 1} {args.setting} {value}: {row}", flush=True)
    numeric = [k for k, v in runs[values[0]][0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    medians = {t: {k: statistics.median(r[k] for r in rows) for k in numeric} for t, rows in runs.items()}
    sustained = {t: {k: sum(r[k] for r in rows) for k in rows[0] if k.startswith("sustained")}
                 for t, rows in runs.items()}
    first = medians[values[0]]
    ratios = {t: {k: round(m[k] / first[k], 3) if first[k] else None for k in numeric} for t, m in medians.items()}
    summary = {"medians": medians, "sustained_rounds": sustained, "ratios_to_first": ratios}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"setting": args.setting, "values": values, "rates": rates, "burst": args.burst,
                                        "window_s": args.window_s, "runs": runs} | summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
