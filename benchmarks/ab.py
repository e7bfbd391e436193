"""What the classifier benchmarks share (``levelled_rows_ab``, ``segment_attention_ab``, ``final_layer_ab``,
``compile_ab``, ``packing_ab``, ``pass_profile``, ``int8_agreement``, ``smoothquant_agreement``): their options, the served classifier with test.csv tweets, and
timed rounds that alternate the sides in one process, so the host's drift lands on both sides alike."""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEST = Path("../shared/datasets/immigration-tweets/test.csv")


def ab_arguments(doc: str, n: int = 160, rounds: int = 3,
                 micro: str = "8,32,160") -> tuple[argparse.Namespace, list[int]]:
    """The A/B scripts' options — ``--n`` tweets, ``--rounds``, ``--micro`` — parsed, and the batch sizes."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--micro", default=micro, help="comma-separated: tweets arriving at a time")
    args = parser.parse_args()
    return args, [int(m) for m in args.micro.split(",")]


def served_classifier_and_tweets(n: int):
    """The classifier as the settings serve it (shipped adapter) and the first ``n`` tweets of test.csv."""
    from shared.classifier.model import StanceClassifier
    from shared.settings import Settings

    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    with TEST.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][:n]
    return classifier, texts


def timed(classifier, texts: list[str]) -> tuple[np.ndarray, float]:
    """The classifier's probabilities for ``texts`` in one call, and its tweets/s (after a 16-tweet warm-up)."""
    classifier.predict_proba(texts[:16])
    started = time.perf_counter()
    probabilities = classifier.predict_proba(texts)
    return probabilities, len(texts) / (time.perf_counter() - started)


def alternate(classifier, texts: list[str], sides: dict[str, Callable[[], None]], micro: list[int],
              rounds: int) -> tuple[dict[tuple[int, str], list[float]], dict[str, np.ndarray]]:
    """``rounds`` rounds; in each, every side in turn (the order reversed every other round) is switched on by
    ``sides[name]()`` and classifies ``texts`` arriving m at a time for each m in ``micro``. Returns tweets/s per
    (m, side) over the rounds, and each side's probabilities from its last run."""
    rates: dict[tuple[int, str], list[float]] = {}
    probs: dict[str, np.ndarray] = {}
    for round_no in range(rounds):
        for side in (list(sides) if round_no % 2 == 0 else list(sides)[::-1]):
            sides[side]()
            for m in micro:
                started = time.perf_counter()
                probs[side] = np.concatenate([classifier.predict_proba(texts[at: at + m])
                                              for at in range(0, len(texts), m)])
                rates.setdefault((m, side), []).append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1}: " + ", ".join(f"{m}/{s}: {v[-1]:.2f}" for (m, s), v in rates.items()),
              flush=True)
    return rates, probs


def print_comparison(rates: dict[tuple[int, str], list[float]], probs: dict[str, np.ndarray], before: str,
                     after: str, micro: list[int]) -> None:
    """Max |Δp| between the two sides, and a Markdown table of their median tweets/s and ratio per batch size."""
    agree = int((probs[after].argmax(axis=1) == probs[before].argmax(axis=1)).sum())
    print(f"max |Δp| {float(np.abs(probs[after] - probs[before]).max()):.1e}; labels agree on {agree} of "
          f"{len(probs[before])}")
    print(f"| tweets arriving | {before} | {after} | ratio |\n|---|---|---|---|")
    for m in micro:
        old, new = (statistics.median(rates[(m, side)]) for side in (before, after))
        print(f"| {m} at a time | {old:.2f} | {new:.2f} | {new / old:.3f} |")
