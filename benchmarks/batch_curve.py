"""How the served classifier's speed depends on how many tweets a call gets, and on the pass size: the same
test.csv tweets classified ``--micro`` at a time for each pass size in ``--pass-tokens``, one process, alternating
rounds (medians). It is the curve the worker's batches live on: at a steady offer near capacity the worker's
batches are what arrived during the previous call (docs/benchmarks.md, "Why a steady offer gets less than a backlog").

    .venv/bin/python benchmarks/batch_curve.py --n 160 --rounds 3 --micro 16,32,64,160 --pass-tokens 512,1024,2048
"""

from __future__ import annotations

import argparse
import statistics
import time

from ab import served_classifier_and_tweets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--micro", default="16,32,64,160")
    parser.add_argument("--pass-tokens", default="2048")
    args = parser.parse_args()
    micro = [int(m) for m in args.micro.split(",")]
    sizes = [int(p) for p in args.pass_tokens.split(",")]
    classifier, texts = served_classifier_and_tweets(args.n)
    classifier.predict_proba(texts[:64])  # warm-up
    rates: dict[tuple[int, int], list[float]] = {}
    for round_no in range(args.rounds):
        for size in sizes if round_no % 2 == 0 else sizes[::-1]:
            classifier.pass_tokens = size
            for m in micro:
                started = time.perf_counter()
                for at in range(0, len(texts), m):
                    classifier.predict_proba(texts[at: at + m])
                rates.setdefault((size, m), []).append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1} done", flush=True)
    print("| pass tokens | " + " | ".join(f"{m} at a time" for m in micro) + " |")
    print("|---|" + "---|" * len(micro))
    for size in sizes:
        print(f"| {size} | " + " | ".join(f"{statistics.median(rates[(size, m)]):.1f}" for m in micro) + " |")


if __name__ == "__main__":
    main()
