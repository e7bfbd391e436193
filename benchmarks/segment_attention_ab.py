"""A/B of attention in packed passes, one process, alternating rounds: each tweet's slice of a row through causal
SDPA on its own (``shared.classifier.attention``, served since 2026-12-02) against SDPA over the whole row with the
block-diagonal mask transformers builds from the restarting position ids, on test.csv tweets arriving ``--micro``
at a time.

    .venv/bin/python benchmarks/segment_attention_ab.py --n 160 --rounds 3 [--micro 8,32,160]

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
    from shared.classifier.attention import SEGMENT_ATTENTION
    from shared.classifier.model import StanceClassifier
    from shared.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--micro", default="8,32,160")
    args = parser.parse_args()
    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    with TEST.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    configs = {id(m.config): m.config for m in classifier.model.modules() if getattr(m, "config", None) is not None}
    if any(c._attn_implementation != SEGMENT_ATTENTION for c in configs.values()):
        sys.exit("this model does not serve segment attention (it is not an SDPA model)")
    sides = {"masked row": "sdpa", "per tweet": SEGMENT_ATTENTION}  # SDPA ignores the segments it is given

    def use(side: str) -> None:
        for config in configs.values():
            config._attn_implementation = sides[side]

    micro = [int(m) for m in args.micro.split(",")]
    classifier.predict_proba(texts[:32])
    rates: dict[tuple[int, str], list[float]] = {}
    probs = {}
    for round_no in range(args.rounds):
        for side in (list(sides) if round_no % 2 == 0 else list(sides)[::-1]):
            use(side)
            for m in micro:
                started = time.perf_counter()
                probs[side] = np.concatenate([classifier.predict_proba(texts[at: at + m])
                                              for at in range(0, len(texts), m)])
                rates.setdefault((m, side), []).append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1}: " + ", ".join(f"{m}/{s}: {v[-1]:.2f}" for (m, s), v in rates.items()),
              flush=True)
    use("per tweet")
    print(f"max |Δp| {float(np.abs(probs['per tweet'] - probs['masked row']).max()):.1e}")
    print("| tweets arriving | masked row | per tweet | ratio |\n|---|---|---|---|")
    for m in micro:
        old, new = (statistics.median(rates[(m, s)]) for s in sides)
        print(f"| {m} at a time | {old:.2f} | {new:.2f} | {new / old:.3f} |")


if __name__ == "__main__":
    main()
