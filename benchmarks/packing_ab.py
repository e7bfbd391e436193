"""A/B of the served classifier's forward passes, one process, alternating rounds: padded length buckets (how
tweets were scored until 2026-12-02: ``length_buckets`` of at most 16 rows and 15 % padding) against packed passes
(``packed_passes``: tweets end to end in rows of 256 tokens, 2048 tokens a pass), on test.csv tweets arriving
``--micro`` at a time in arrival order (as the worker sees them) and all at once (as the bench's served number).

    .venv/bin/python benchmarks/packing_ab.py --n 160 --rounds 3 [--micro 4,8,16,32]

Prints tweets/s per side and setting (median of the rounds) and the packed/padded ratio, and checks that both sides
give the same probabilities (max |Δp|).
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

from ab import ab_arguments, served_classifier_and_tweets


def padded_proba(classifier, texts: list[str], rows: int = 16) -> np.ndarray:
    import torch

    from shared.classifier.scoring import length_buckets

    sequences = classifier.encode(texts)
    probs = np.zeros((len(texts), 4), dtype=np.float32)
    with torch.inference_mode():
        for idx in length_buckets([len(s) for s in sequences], rows):
            ids, mask = classifier.collate([sequences[i] for i in idx])
            probs[idx] = torch.softmax(classifier.label_logits(ids, mask).float(), dim=-1).numpy()
    return probs


def main() -> None:
    args, sizes = ab_arguments(__doc__, n=160, rounds=3, micro="4,8,16,32")
    classifier, texts = served_classifier_and_tweets(args.n)
    sides = {"padded": lambda chunk: padded_proba(classifier, chunk), "packed": classifier.predict_proba}
    agreement = float(np.abs(sides["padded"](texts) - sides["packed"](texts)).max())
    settings_tried = ["all"] + sizes
    rates: dict[str, dict[str, list[float]]] = {s: {str(m): [] for m in settings_tried} for s in sides}
    for round_no in range(args.rounds):
        order = list(sides) if round_no % 2 == 0 else list(sides)[::-1]
        for micro in settings_tried:
            step = len(texts) if micro == "all" else micro
            for side in order:
                started = time.perf_counter()
                for at in range(0, len(texts), step):
                    sides[side](texts[at: at + step])
                rates[side][str(micro)].append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1}: " + json.dumps({s: {m: round(v[-1], 2) for m, v in r.items()}
                                                      for s, r in rates.items()}), flush=True)
    table = {str(m): {"padded": round(statistics.median(rates["padded"][str(m)]), 2),
                      "packed": round(statistics.median(rates["packed"][str(m)]), 2)} for m in settings_tried}
    for row in table.values():
        row["ratio"] = round(row["packed"] / row["padded"], 3)
    print(json.dumps({"n": len(texts), "rounds": args.rounds, "max_abs_dp": agreement, "tweets_per_s": table},
                     indent=1))


if __name__ == "__main__":
    main()
