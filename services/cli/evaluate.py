"""Classify every tweet of a labeled CSV (id, lang, label, text; paper_pred optional) and write DIR/metrics.json
(with the label-share errors under ``quantification``), DIR/predictions.csv (one row per tweet), DIR/report.md,
DIR/confusion.png and DIR/per_language.png."""

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
    from shared.quantification.estimators import adapter_calibration
    from shared.training.evaluation import evaluate_csv

    adapter = args.adapter or settings.adapter
    classifier = StanceClassifier.load(settings, adapter=adapter)
    metrics = evaluate_csv(classifier, args.data, args.out, calibration=adapter_calibration(adapter))
    paper = metrics.get("paper")
    print(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
          f"{metrics['tweets_per_s']:.1f} tweets/s"
          + (f"   (paper: {paper['accuracy']:.3f} / {paper['macro_f1']:.3f})" if paper else "")
          + _shares_line(metrics["quantification"])
          + f"\nreport: {args.out / 'report.md'}, per tweet: {args.out / 'predictions.csv'}")
    return 0


def _shares_line(q: dict) -> str:
    if q["estimator"] is None:
        return f"\nlabel shares: classify-and-count error {q['cc_mae']:.3f} (no calibration with this adapter)"
    return (f"\nlabel shares per language, mean absolute error: classify-and-count {q['cc_mae']:.3f}, "
            f"{q['estimator'].upper()} {q['corrected_mae']:.3f}")
