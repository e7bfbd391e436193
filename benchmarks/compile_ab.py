"""A/B of torch.compile (inductor, dynamic shapes) on the decoder's MLPs and RMS norms against eager, one process,
alternating rounds, on test.csv tweets arriving ``--micro`` at a time. Tried for issue 15 (the elementwise work
between the matrix products is ≈ 15 % of a pass on CPU); not adopted (docs/benchmarks.md).

    .venv/bin/python benchmarks/compile_ab.py --n 160 --rounds 2 [--micro 8,16,32,64,160]
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
NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")


def main() -> None:
    import torch

    from shared.classifier.model import StanceClassifier
    from shared.classifier.scoring import unwrap
    from shared.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--micro", default="8,16,32,64,160")
    args = parser.parse_args()
    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    with TEST.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    _, backbone = unwrap(classifier.model)
    modules = [layer.mlp for layer in backbone.layers] + [getattr(layer, n) for layer in backbone.layers for n in NORMS]
    tables = {"eager": {id(m): m.forward for m in modules},
              "compiled": {id(m): torch.compile(m.forward, dynamic=True) for m in modules}}

    def use(side: str) -> None:
        for m in modules:
            m.forward = tables[side][id(m)]

    use("compiled")
    started = time.perf_counter()
    classifier.predict_proba(texts[:40])
    classifier.predict_proba(texts[:5])
    print(f"compile warm-up {time.perf_counter() - started:.1f} s", flush=True)
    micro = [int(m) for m in args.micro.split(",")]
    rates: dict[tuple[int, str], list[float]] = {}
    probs = {}
    for round_no in range(args.rounds):
        for side in (["eager", "compiled"] if round_no % 2 == 0 else ["compiled", "eager"]):
            use(side)
            for m in micro:
                started = time.perf_counter()
                probs[side] = np.concatenate([classifier.predict_proba(texts[at: at + m])
                                              for at in range(0, len(texts), m)])
                rates.setdefault((m, side), []).append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1}: " + ", ".join(f"{m}/{s}: {v[-1]:.2f}" for (m, s), v in rates.items()),
              flush=True)
    print(f"max |Δp| {float(np.abs(probs['eager'] - probs['compiled']).max()):.1e}")
    print("| tweets arriving | eager | compiled | ratio |\n|---|---|---|---|")
    for m in micro:
        eager, compiled = (statistics.median(rates[(m, s)]) for s in ("eager", "compiled"))
        print(f"| {m} at a time | {eager:.2f} | {compiled:.2f} | {compiled / eager:.3f} |")


if __name__ == "__main__":
    main()
