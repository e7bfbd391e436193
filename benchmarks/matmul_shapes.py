"""bf16 matrix products of the model's own shapes (hidden 640, MLP 2048, query 1024) for a range of token counts M,
as torch runs them on this CPU: GFLOP/s per (shape, M). On the AMX Xeon some shapes run at half speed for M between
≈ 600 and 1,280 tokens (docs/benchmarks.md).

    .venv/bin/python benchmarks/matmul_shapes.py --rounds 2
"""

from __future__ import annotations

import argparse
import time

SHAPES = ((2048, 640), (640, 1024), (640, 2048))  # (K, N): MLP down, query, MLP gate/up
TOKENS = (512, 528, 600, 1000, 1024, 1056, 1088, 1200, 1280, 1536, 1792, 1900, 2048)


def gflops(k: int, n: int, m: int, calls: int = 40) -> float:
    import torch

    weight, x = torch.randn(n, k, dtype=torch.bfloat16), torch.randn(m, k, dtype=torch.bfloat16)
    for _ in range(5):
        torch.nn.functional.linear(x, weight)
    started = time.perf_counter()
    for _ in range(calls):
        torch.nn.functional.linear(x, weight)
    return 2 * m * k * n * calls / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for round_no in range(args.rounds):
        for k, n in SHAPES:
            print(f"round {round_no + 1} K={k} N={n}: " + " ".join(f"{m}:{gflops(k, n, m):.0f}" for m in TOKENS),
                  flush=True)


if __name__ == "__main__":
    main()
