"""Classify every tweet of a labeled CSV (id, lang, label, text; paper_pred optional) and write DIR/metrics.json,
DIR/report.md, DIR/confusion.png and DIR/per_language.png."""

from __future__ import annotations

from pathlib import Path


NAME = "eval"
HELP = "score a labeled CSV: metrics.json, report.md and plots, vs the paper if present"


def arguments(parser) -> None:
    parser.add_argument("--data", required=True, type=Path, metavar="CSV")
    parser.add_argument("--adapter", type=Path, metavar="DIR", help="adapter directory (default: STANCESTREAM_ADAPTER)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")


def run(args, settings) -> int:
    from shared.classifier.model import StanceClassifier
    from shared.training.evaluation import evaluate_csv

    classifier = StanceClassifier.load(settings, adapter=args.adapter or settings.adapter)
    metrics = evaluate_csv(classifier, args.data, args.out)
    paper = metrics.get("paper")
    print(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
          f"{metrics['tweets_per_s']:.1f} tweets/s"
          + (f"   (paper: {paper['accuracy']:.3f} / {paper['macro_f1']:.3f})" if paper else "")
          + f"\nreport: {args.out / 'report.md'}")
    return 0
