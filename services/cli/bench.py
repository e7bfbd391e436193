"""Classifier-only throughput per precision and batch size on the tweets of a labeled CSV; the paper's method
(llama.cpp, one tweet per call) on the same tweets and base model; the measured matmul peak and the fraction of it
the classifier achieves; latency from produce to queryable row through the embedded stack at fixed offered rates.
Writes DIR/bench.json, DIR/e2e.png and the latest-bench section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


HELP = "measure throughput, the paper-method baseline, the roofline and end-to-end latency"


def arguments(parser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/datasets/immigration-tweets/test.csv"), metavar="CSV",
        help="tweets to classify (default: the paper's test set beside the checkout)")
    parser.add_argument("--n", type=int, default=400, help="tweets for the classifier measurements (default 400)")
    parser.add_argument("--precisions", default="fp32,bf16,nf4", help="comma-separated (default fp32,bf16,nf4)")
    parser.add_argument("--batch-sizes", default="8,16,32", help="comma-separated (default 8,16,32)")
    parser.add_argument("--slow-n", type=int, default=48,
                        help="tweets for a precision that a probe batch shows slower than 3 tweets/s (default 48)")
    parser.add_argument("--baseline-n", type=int, default=150, help="tweets for the llama.cpp baseline (default 150)")
    parser.add_argument("--rates", default="5,10,20,50,max",
                        help="offered rates for end to end (default 5,10,20,50,max)")
    parser.add_argument("--per-rate", type=int, default=150, help="tweets offered per rate (default 150)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")


def run(args, settings) -> int:
    from services.bench.main import run as bench

    bench(settings, args.data, args.out, args.n, args.precisions.split(","),
          [int(b) for b in args.batch_sizes.split(",")], args.rates.split(","), args.per_rate, args.baseline_n,
          args.slow_n, args.skip_baseline, args.skip_e2e, not args.no_doc)
    return 0
