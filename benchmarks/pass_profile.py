"""Where a served classifier call spends its time: the torch profiler over one ``predict_proba`` of N test.csv
tweets (default runtime, shipped adapter, packed passes as served), the top operators by their own CPU time.

    .venv/bin/python benchmarks/pass_profile.py --n 160

The share of ``aten::mm`` bounds the roofline fraction: what is not a matrix product is elementwise work
between them (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

from torch.profiler import ProfilerActivity, profile

from ab import served_classifier_and_tweets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--rows", type=int, default=15, help="operators shown")
    args = parser.parse_args()
    classifier, texts = served_classifier_and_tweets(args.n)
    classifier.predict_proba(texts[:16])  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        classifier.predict_proba(texts)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
