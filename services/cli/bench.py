"""Classifier-only throughput per precision and pass size on the tweets of a labeled CSV; the paper's method
(llama.cpp, one tweet per call) on the same tweets and base model; the measured matmul peak and the fraction of it
the classifier achieves; the replay rate; and through the embedded stack the end-to-end capacity, the latency from
produce to queryable row at 0.25, 0.5 and 0.75 of it, and the speedup identical tweets get. Writes DIR/bench.json,
DIR/e2e.png and the latest-bench section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


HELP = "measure throughput, the paper-method baseline, the roofline, end-to-end capacity and latency"


def arguments(parser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/datasets/immigration-tweets/test.csv"), metavar="CSV",
        help="tweets to classify (default: the paper's test set beside the checkout)")
    parser.add_argument("--n", type=int, default=400, help="tweets for the classifier measurements (default 400)")
    parser.add_argument("--precisions", default="fp32,bf16,nf4", help="comma-separated (default fp32,bf16,nf4)")
    parser.add_argument("--pass-tokens", default="1024,2048",
                        help="tokens per packed forward pass to compare, comma-separated (default 1024,2048)")
    parser.add_argument("--slow-n", type=int, default=48,
                        help="tweets for a precision that a probe batch shows slower than 3 tweets/s (default 48)")
    parser.add_argument("--baseline-n", type=int, default=150, help="tweets for the llama.cpp baseline (default 150)")
    parser.add_argument("--window-s", type=float, default=60,
                        help="seconds of steady offer per end-to-end window (default 60; the capacity rule is in "
                             "docs/benchmarks.md)")
    parser.add_argument("--replay-n", type=int, default=5000,
                        help="archived tweets for the replay rate (default 5000; 0 skips it)")
    parser.add_argument("--workers-n", type=int, default=200, metavar="N",
                        help="tweets per burst for the throughput of 1, 2, ... worker processes up to the cores "
                             "(default 200; 0 skips it)")
    parser.add_argument("--max-workers", type=int, metavar="K",
                        help="most worker processes for that measurement (default: the cores)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")


def run(args, settings) -> int:
    from services.bench.main import run as bench

    bench(settings, args.data, args.out, args.n, args.precisions.split(","),
          [int(b) for b in args.pass_tokens.split(",")], args.window_s, args.replay_n, args.baseline_n,
          args.slow_n, args.skip_baseline, args.skip_e2e, not args.no_doc, args.workers_n,
          args.max_workers)
    return 0
