"""A/B of how packed passes fill their rows, one process, alternating rounds: levelled rows (``packed_passes`` since
2026-12-02: the fewest rows of at most 256 tokens, filled evenly) against rows filled first (best fit, longest
first: 8 tweets of ≈ 66 tokens became rows of 256 + 256 + 18, and the pass is as wide as its fullest row), on
test.csv tweets arriving ``--micro`` at a time, as the worker sees them.

    .venv/bin/python benchmarks/levelled_rows_ab.py --n 128 --rounds 2 [--micro 4,8,16,32]

Prints tweets/s per side and batch size (median of the rounds), the ratio, and max |Δp| between the sides.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEST = Path("../shared/datasets/immigration-tweets/test.csv")


def main() -> None:
    import shared.classifier.model as model_module
    import shared.classifier.scoring as scoring
    from shared.classifier.model import StanceClassifier
    from shared.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--micro", default="4,8,16,32")
    args = parser.parse_args()
    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    with TEST.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    levelled, level_rows = scoring.packed_passes, scoring._level_rows

    def filled_first(sequences, pass_tokens, **kwargs):  # levelling off: every candidate is the first-fit rows
        scoring._level_rows = lambda lengths, count: scoring._fewest_rows(lengths, max([256, *lengths]))
        try:
            return levelled(sequences, pass_tokens, **kwargs)
        finally:
            scoring._level_rows = level_rows

    sides = {"filled first": filled_first, "levelled": levelled}
    micro = [int(m) for m in args.micro.split(",")]
    classifier.predict_proba(texts[:32])
    probs = {}
    rates: dict[tuple[int, str], list[float]] = {}
    for round_no in range(args.rounds):
        for m in micro:
            for side in (list(sides) if round_no % 2 == 0 else list(sides)[::-1]):
                model_module.packed_passes = sides[side]
                started = time.perf_counter()
                probs[side] = np.concatenate([classifier.predict_proba(texts[at: at + m])
                                              for at in range(0, len(texts), m)])
                rates.setdefault((m, side), []).append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1}: " + ", ".join(f"{m}/{s}: {v[-1]:.2f}" for (m, s), v in rates.items()),
              flush=True)
    model_module.packed_passes = levelled
    print(f"max |Δp| {float(np.abs(probs['levelled'] - probs['filled first']).max()):.1e}")
    print("| tweets arriving | filled first | levelled | ratio |\n|---|---|---|---|")
    for m in micro:
        old, new = (statistics.median(rates[(m, s)]) for s in sides)
        print(f"| {m} at a time | {old:.2f} | {new:.2f} | {new / old:.3f} |")


if __name__ == "__main__":
    main()
