"""How the served classifier's speed depends on how many tweets a call gets, and on the pass size: the same
test.csv tweets classified ``--micro`` at a time for each pass size in ``--pass-tokens``, one process, alternating
rounds (medians). It is the curve the worker's batches live on: at a steady offer near capacity the worker's
batches are what arrived during the previous call (docs/benchmarks.md, "Why a steady offer gets less than a backlog").

    .venv/bin/python benchmarks/batch_curve.py --n 160 --rounds 3 --micro 16,32,64,160 --pass-tokens 512,1024,2048
"""

from __future__ import annotations

import argparse
import statistics

from ab import alternate, served_classifier_and_tweets


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

    def passes_of(size: int):
        def switch() -> None:
            classifier.pass_tokens = size
        return switch

    rates, _ = alternate(classifier, texts, {str(size): passes_of(size) for size in sizes}, micro, args.rounds)
    print("| pass tokens | " + " | ".join(f"{m} at a time" for m in micro) + " |")
    print("|---|" + "---|" * len(micro))
    for size in sizes:
        print(f"| {size} | " + " | ".join(f"{statistics.median(rates[(m, str(size))]):.1f}" for m in micro) + " |")


if __name__ == "__main__":
    main()
