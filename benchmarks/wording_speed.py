"""What the short prompt wording saves in serving, against the instruction wording (cv05's speed half).

    .venv/bin/python benchmarks/wording_speed.py [--n 256] [--rounds 3]

Speed depends on the tokens per tweet, not on the adapter's weights, so the shipped adapter serves both sides:
one process, the same tweets of test.csv, the wording switched per round and alternating (instruction, short,
instruction, ...). Prints tokens per tweet, the medians in tweets/s and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from shared.classifier.model import StanceClassifier
from shared.classifier.scoring import PROMPT_WORDINGS
from shared.settings import Settings

TEST = Path("../shared/datasets/immigration-tweets/test.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    with open(TEST, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    classifier.predict_proba(texts[:16])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in PROMPT_WORDINGS}
    tokens: dict[str, float] = {}
    for _ in range(args.rounds):
        for wording in PROMPT_WORDINGS:
            classifier.use_wording(wording)
            tokens[wording] = statistics.mean(len(ids) for ids in classifier.encode(texts))
            started = time.perf_counter()
            classifier.predict_proba(texts)
            times[wording].append(time.perf_counter() - started)
    rates = {name: len(texts) / statistics.median(spent) for name, spent in times.items()}
    print(json.dumps({
        "tweets": len(texts), "rounds": args.rounds,
        "tokens_per_tweet": {name: round(value, 1) for name, value in tokens.items()},
        "tweets_per_s": {name: round(rate, 2) for name, rate in rates.items()},
        "runs_s": {name: [round(t, 2) for t in spent] for name, spent in times.items()},
        "ratio_short_to_instruction": round(rates["short"] / rates["instruction"], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
