"""What an ensemble of K adapters costs when the members share the frozen layers' pass, against one adapter.

    .venv/bin/python benchmarks/ensemble_speed.py [--n 128] [--rounds 3]

The shipped adapter (LoRA on the top 6 of 18 layers) stands in for every member: the cost does not depend on the
weights. One process, the same tweets of test.csv; per round and alternating: the served single adapter (merged
into the base, as the worker runs it) and ensembles of K = 2 and 3. Prints the medians in tweets/s and the ratio to
the single adapter, next to what K separate models would cost (1/K) and the layer arithmetic
(L / (L − N + K·N)).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from shared.classifier.ensemble import AdapterEnsemble, top_layers
from shared.classifier.model import StanceClassifier
from shared.settings import Settings

TEST = Path("../shared/datasets/immigration-tweets/test.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    with open(TEST, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    adapter = settings.adapter
    scorers = {"single": StanceClassifier.load(settings, adapter=adapter)}
    for k in (2, 3):
        scorers[f"ensemble-{k}"] = AdapterEnsemble(StanceClassifier.load(settings, adapter=None), [adapter] * k)
    layers = scorers["single"].model.config.num_hidden_layers
    top = top_layers(adapter)
    for scorer in scorers.values():
        scorer.predict_proba(texts[:16])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(args.rounds):
        for name, scorer in scorers.items():
            started = time.perf_counter()
            scorer.predict_proba(texts)
            times[name].append(time.perf_counter() - started)
    single = len(texts) / statistics.median(times["single"])
    result = {"tweets": len(texts), "rounds": args.rounds, "layers": layers, "adapted_top_layers": top,
              "single_tweets_per_s": round(single, 2)}
    for k in (2, 3):
        rate = len(texts) / statistics.median(times[f"ensemble-{k}"])
        result[f"ensemble_{k}"] = {"tweets_per_s": round(rate, 2), "ratio_to_single": round(rate / single, 3),
                                   "separate_models_ratio": round(1 / k, 3),
                                   "layer_arithmetic_ratio": round(layers / (layers - top + k * top), 3)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
