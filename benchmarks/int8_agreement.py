"""int8 (torchao: per-token dynamic activation scales, per-channel int8 weights) against the served precision.

    .venv/bin/pip install torchao==0.18.0   # not a dependency: int8 is not offered (docs/benchmarks.md)
    .venv/bin/python benchmarks/int8_agreement.py --n 160

Same process, same tweets of test.csv: tweets/s of both and the share of tweets whose label agrees. The issue's bar
for offering int8: agreement ≥ 0.99 and macro-F1 within 0.005.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from services.bench.main import read_tweets
from shared.classifier.model import StanceClassifier
from shared.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=160)
    args = parser.parse_args()
    import torch
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    texts, _ = read_tweets(DATA, args.n)
    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)

    def timed() -> tuple[np.ndarray, float]:
        classifier.predict_proba(texts[:16])  # warm-up
        started = time.perf_counter()
        probabilities = classifier.predict_proba(texts)
        return probabilities, len(texts) / (time.perf_counter() - started)

    served, served_rate = timed()
    print(f"served ({classifier.runtime.dtype}): {served_rate:.2f} tweets/s", flush=True)
    quantize_(classifier.model, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda module, name: isinstance(module, torch.nn.Linear) and "layers." in name)
    int8, int8_rate = timed()
    agreement = float((int8.argmax(1) == served.argmax(1)).mean())
    print(f"int8: {int8_rate:.2f} tweets/s, label agreement {agreement:.3f}, max |dp| {np.abs(int8 - served).max():.3f}")


if __name__ == "__main__":
    main()
