"""Measure an adapter's errors per class on labeled tweets it never trained on and save them beside it
(quantification.json), so that its label shares can be corrected (`eval`, the `label_shares` table, `monitor`).
Training and the trainer do this themselves; this is for adapters made before. Default data: the adapter's own
dev split, rebuilt from its metadata."""

from __future__ import annotations

from pathlib import Path

HELP = "measure an adapter's per-class errors for corrected label shares"


def arguments(parser) -> None:
    parser.add_argument("--adapter", type=Path, metavar="DIR", help="adapter directory (default: STANCESTREAM_ADAPTER)")
    parser.add_argument("--data", type=Path, metavar="CSV",
                        help="labeled tweets the adapter never trained on (default: its dev split)")


def run(args, settings) -> int:
    from shared.classifier.model import StanceClassifier
    from shared.errors import StancestreamError
    from shared.training.calibration import CalibrationError, calibrate, dev_split_of
    from shared.training.data import read_labeled

    adapter = args.adapter or settings.adapter
    if adapter is None:
        raise StancestreamError("no adapter to calibrate: pass --adapter DIR")
    try:
        examples = read_labeled([args.data]) if args.data else dev_split_of(adapter)
    except (CalibrationError, ValueError) as exc:
        raise StancestreamError(str(exc)) from exc
    classifier = StanceClassifier.load(settings, adapter=adapter)
    calibration = calibrate(classifier, examples, adapter, str(args.data) if args.data else "dev split")
    print(f"{adapter / 'quantification.json'}: measured on {calibration.source}")
    return 0
