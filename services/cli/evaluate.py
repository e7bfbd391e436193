"""Classify every tweet of a labeled CSV (id, lang, label, text; paper_pred optional) and write DIR/metrics.json
(with the label-share errors under ``quantification``), DIR/predictions.csv (one row per tweet), DIR/report.md,
DIR/confusion.png and DIR/per_language.png."""

from __future__ import annotations

from pathlib import Path


NAME = "eval"
HELP = "score a labeled CSV: metrics.json, report.md and plots, vs the paper if present"


def arguments(parser) -> None:
    parser.add_argument("--data", required=True, type=Path, metavar="CSV")
    parser.add_argument("--adapter", type=Path, action="append", metavar="DIR",
                        help="adapter directory (default: STANCESTREAM_ADAPTER); given twice or more: their ensemble, "
                             "sharing the frozen layers' pass (all trained with the same --train-layers)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")


def run(args, settings) -> int:
    from shared.classifier.model import StanceClassifier
    from shared.quantification.estimators import adapter_calibration
    from shared.training.evaluation import evaluate_csv

    if args.adapter and len(args.adapter) > 1:
        from shared.classifier.ensemble import AdapterEnsemble

        classifier = AdapterEnsemble(StanceClassifier.load(settings, adapter=None), args.adapter)
        calibration = None  # measured per adapter; an ensemble has none of its own
    else:
        adapter = args.adapter[0] if args.adapter else settings.adapter
        classifier = StanceClassifier.load(settings, adapter=adapter)
        calibration = adapter_calibration(adapter)
    metrics = evaluate_csv(classifier, args.data, args.out, calibration=calibration)
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
