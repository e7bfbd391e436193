"""Measuring an adapter's ``Calibration`` (shared.quantification) on labeled tweets it never trained on. Training
and the trainer's gate do it themselves; ``stancestream calibrate`` does it for an adapter made without it, by
default on that adapter's own dev split, rebuilt from its metadata and checked against the digest recorded
there."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.classifier.adapters import read_adapter_metadata
from shared.classifier.model import StanceClassifier
from shared.quantification.estimators import CALIBRATION_FILE, Calibration
from shared.training.data import Example, data_digest, read_labeled, stratified_split
from shared.training.metrics import to_indices


class CalibrationError(ValueError):
    pass


def dev_split_of(adapter_dir: Path, root: Path = Path(".")) -> list[Example]:
    """The dev split the adapter was selected on: its sources split as training split them."""
    meta = read_adapter_metadata(adapter_dir)
    data, hyper = meta.get("data", {}), meta.get("hyperparameters", {})
    sources = [root / s for s in data.get("sources", []) if not s.startswith("clickhouse:")]
    if not sources or "dev_sha256_16" not in data:
        raise CalibrationError(f"{adapter_dir}: its metadata names no CSV dev split; pass --data with labeled "
                               "tweets it never trained on")
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise CalibrationError(f"{adapter_dir} was trained on {', '.join(missing)}, which is not there; pass --data")
    _, dev = stratified_split(read_labeled(sources), hyper["dev_fraction"], hyper["dev_seed"])
    if data_digest(dev) != data["dev_sha256_16"]:
        raise CalibrationError(f"{adapter_dir}: the rebuilt dev split differs from the one it was trained with "
                               "(the sources changed); pass --data")
    return dev


def save_calibration(probs: np.ndarray, examples: list[Example], adapter_dir: Path, source: str) -> Calibration:
    """The calibration of ``probs`` against the examples' labels, saved beside the adapter's weights; ``source``
    names the examples ("dev split", "frozen holdout", a CSV)."""
    calibration = Calibration.measure(probs, to_indices([ex.label for ex in examples]),
                                      f"{source}, {len(examples)} tweets")
    calibration.save(adapter_dir / CALIBRATION_FILE)
    return calibration


def calibrate(classifier: StanceClassifier, examples: list[Example], adapter_dir: Path, source: str) -> Calibration:
    """Measure on ``examples`` and save beside the adapter's weights."""
    return save_calibration(classifier.predict_proba([ex.text for ex in examples]), examples, adapter_dir, source)
