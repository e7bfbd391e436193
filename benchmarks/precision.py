"""Classifier-only throughput of each precision on the paper's test tweets (issue: default quantization).

    python benchmarks/precision.py --n 64 [--batch 16]

Prints tweets/s and tokens/s per precision; all runs use the same tweets, prompt and sub-batching.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import torch

from shared.classifier import StanceClassifier
from shared.settings import Settings

TEST_CSV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="tweets to classify per precision")
    parser.add_argument("--batch", type=int, default=16, help="tweets per forward pass")
    parser.add_argument("--precisions", default="fp32,bf16,nf4")
    args = parser.parse_args()
    with open(TEST_CSV, encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.python_version()}")
    for precision in args.precisions.split(","):
        settings = Settings(dtype="bf16" if precision == "bf16" else "fp32", device="cpu",
                            quantization="nf4" if precision == "nf4" else "none", infer_batch_size=args.batch)
        classifier = StanceClassifier.load(settings)
        tokens = sum(len(s) for s in classifier.encode(texts))
        classifier.predict_proba(texts[: args.batch])  # warm-up
        started = time.perf_counter()
        classifier.predict_proba(texts)
        seconds = time.perf_counter() - started
        print(f"{precision:>5}: {len(texts) / seconds:6.2f} tweets/s  {tokens / seconds:7.0f} tokens/s  "
              f"({len(texts)} tweets, {tokens / len(texts):.0f} tokens/tweet, batch {args.batch})")
        del classifier


if __name__ == "__main__":
    main()
