"""The ceiling this CPU puts on the served classifier: fp32 matrix products (torch.mm, MKL) against the int8 ones
torch has for it (fbgemm: per-channel int8 weights, with the activations quantized in the call, and with them
quantized beforehand — the kernel alone), over the model's shapes and a square one, one process, alternating rounds.

    .venv/bin/python benchmarks/gemm_ceiling.py [--rounds 7] [--gflop-per-tweet 12.75 --baseline 5.05]

Prints G(FL)OP/s per kind and shape (medians), the ratio to fp32, and, given a bench's GFLOP per tweet and its
baseline tweets/s, the tweets/s and ratio each kind would allow if a pass were nothing but its products at that rate.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

SHAPES = [(2048, 2048, 2048), (1024, 640, 2048), (1024, 2048, 640)]  # tokens × in × out


def kernels(tokens: int, inputs: int, outputs: int) -> dict:
    """One call of each kind on random data of this shape (the int8 ones prepacked once, as a served model would)."""
    x, w = torch.randn(tokens, inputs), torch.randn(outputs, inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's quantized tensors are deprecated; fbgemm is still what AVX2 has
        weight = torch.quantize_per_channel(w, w.abs().amax(1) / 127, torch.zeros(outputs, dtype=torch.long), 0,
                                            torch.qint8)
        packed = torch.ops.quantized.linear_prepack(weight, None)
        xq = torch.quantize_per_tensor(x, float(x.abs().max() / 127), 0, torch.quint8)
    return {
        "fp32": lambda: torch.mm(x, w.t()),
        "int8, activations quantized in the call": lambda: torch.ops.quantized.linear_dynamic(x, packed, False),
        "int8 kernel alone": lambda: torch.ops.quantized.linear(xq, packed, 1.0, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gflop-per-tweet", type=float, help="a bench's roofline count (bench.json: roofline)")
    parser.add_argument("--baseline", type=float, help="a bench's baseline_tweets_per_s")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    best: dict[str, float] = {}
    for shape in SHAPES:
        sides = kernels(*shape)
        for call in sides.values():
            call()
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for round_no in range(args.rounds):
            for name in (list(sides) if round_no % 2 == 0 else list(sides)[::-1]):
                started = time.perf_counter()
                for _ in range(3):
                    sides[name]()
                rates[name].append(2 * shape[0] * shape[1] * shape[2] * 3 / (time.perf_counter() - started) / 1e9)
        fp32 = statistics.median(rates["fp32"])
        for name, values in rates.items():
            median = statistics.median(values)
            best[name] = max(best.get(name, 0.0), median)
            print(f"{'x'.join(map(str, shape))} {name}: {median:.1f} G(FL)OP/s = {median / fp32:.2f}x fp32", flush=True)
    if args.gflop_per_tweet:
        for name, rate in best.items():
            tweets = rate / args.gflop_per_tweet
            ratio = f" = {tweets / args.baseline:.2f}x the baseline" if args.baseline else ""
            print(f"ceiling, {name} at its best shape: {tweets:.2f} tweets/s{ratio}")


if __name__ == "__main__":
    main()
