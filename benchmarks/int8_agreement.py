"""int8 against the served precision: torchao (per-token dynamic activation scales, per-channel int8 weights) or
torch's own fbgemm kernels (`--kernel fbgemm`: per-channel int8 weights, one dynamic scale per call's activations;
the only int8 GEMM torch has for an AVX2-only CPU).

    .venv/bin/pip install torchao==0.18.0   # not a dependency: int8 is not offered (docs/benchmarks.md)
    .venv/bin/python benchmarks/int8_agreement.py --n 160 --keep none --keep down_proj --keep down_proj,o_proj
    .venv/bin/python benchmarks/int8_agreement.py --kernel fbgemm --n 160 --keep none --keep down_proj

Same process, same tweets of test.csv: tweets/s of the served precision and of each int8 variant, the share of
tweets whose label agrees and both macro-F1s. `--keep` names the decoder projections left at the served precision
(where Gemma's activation outliers are: the MLP's down projection reads GELU outputs), `none` quantizes them all.
The issue's bar for offering int8: agreement ≥ 0.99 and macro-F1 within 0.005.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ab import timed
from services.bench.main import machine, read_tweets
from shared.classifier.model import StanceClassifier
from shared.settings import Settings
from shared.training.metrics import scores, to_indices

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--keep", action="append", default=None,
                        help="comma-separated projection names kept unquantized, or 'none' (repeatable: one variant each)")
    parser.add_argument("--kernel", choices=["torchao", "fbgemm"], default="torchao")
    args = parser.parse_args()
    import torch

    texts, labels = read_tweets(DATA, args.n)
    truth = to_indices(labels)
    settings = Settings()
    print(machine(), f"torch threads {torch.get_num_threads()}", flush=True)

    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    served, served_rate = timed(classifier, texts)
    served_f1 = scores(truth, served.argmax(1))["macro_f1"]
    print(f"served ({classifier.runtime.dtype}): {served_rate:.2f} tweets/s, macro-F1 {served_f1:.3f}", flush=True)
    for keep in args.keep or ["none"]:
        kept = set() if keep == "none" else set(keep.split(","))
        classifier = StanceClassifier.load(settings, adapter=settings.adapter)

        def quantized(module: torch.nn.Module, name: str) -> bool:
            return (isinstance(module, torch.nn.Linear) and "layers." in name
                    and not any(part in name for part in kept))

        quantize(classifier.model, quantized, args.kernel)
        int8, int8_rate = timed(classifier, texts)
        agreement = float((int8.argmax(1) == served.argmax(1)).mean())
        int8_f1 = scores(truth, int8.argmax(1))["macro_f1"]
        print(f"int8 ({args.kernel}) keeping {keep}: {int8_rate:.2f} tweets/s ({int8_rate / served_rate:.2f}x), label agreement "
              f"{agreement:.3f}, max |dp| {np.abs(int8 - served).max():.3f}, macro-F1 {int8_f1:.3f} "
              f"({int8_f1 - served_f1:+.3f})", flush=True)


def quantize(model, chosen, kernel: str) -> None:
    """int8 in place on the linear layers ``chosen(module, name)`` picks."""
    import torch
    if kernel == "torchao":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=chosen)
        return
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    torch.backends.quantized.engine = "fbgemm"
    names = {name: per_channel_dynamic_qconfig for name, module in model.named_modules() if chosen(module, name)}
    quantize_dynamic(model, names, inplace=True)


if __name__ == "__main__":
    main()
