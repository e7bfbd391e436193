"""An adapter's calibration (its errors per class on tweets it never trained on): written by training, rebuilt
for an older adapter from its own dev split by `calibrate`, refused when that split cannot be rebuilt."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from shared.classifier.adapters import ADAPTER_METADATA
from shared.classifier.model import StanceClassifier
from shared.quantification.estimators import CALIBRATION_FILE, adapter_calibration
from shared.training.calibration import CalibrationError, calibrate, dev_split_of

pytestmark = pytest.mark.model


def test_training_saves_the_calibration_of_the_kept_weights(tiny_adapter):
    calibration = adapter_calibration(tiny_adapter)
    meta = json.loads((tiny_adapter / ADAPTER_METADATA).read_text())
    assert calibration is not None and calibration.n == meta["data"]["dev"] == meta["dev_metrics"]["n"]
    assert calibration.source == f"dev split, {calibration.n} tweets"
    # its hard matrix is the dev confusion the metadata reports, row-normalised
    assert np.allclose(calibration.hard.sum(axis=1), 1) and np.allclose(calibration.soft.sum(axis=1), 1, atol=1e-4)


def test_calibrate_rebuilds_the_dev_split_from_the_metadata(tiny_adapter, tiny_settings, tmp_path):
    with pytest.raises(CalibrationError, match="names no CSV dev split"):
        dev_split_of(tiny_adapter)  # trained without naming its sources
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, adapter)
    (adapter / CALIBRATION_FILE).unlink()
    source = tiny_adapter.parents[1] / "labels.csv"  # what the fixture trained on
    meta = json.loads((adapter / ADAPTER_METADATA).read_text())
    meta["data"]["sources"] = [str(source)]
    (adapter / ADAPTER_METADATA).write_text(json.dumps(meta))
    dev = dev_split_of(adapter)
    assert len(dev) == meta["data"]["dev"]
    calibration = calibrate(StanceClassifier.load(tiny_settings, adapter=adapter), dev, adapter, "dev split")
    assert adapter_calibration(adapter).n == calibration.n == len(dev)
    assert np.allclose(adapter_calibration(adapter).soft, adapter_calibration(tiny_adapter).soft, atol=1e-3)

    changed = tmp_path / "changed.csv"
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    dev_ids = {ex.id for ex in dev}
    next(r for r in rows if r["id"] in dev_ids)["text"] += " (edited)"  # a dev tweet's text changed
    with open(changed, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta["data"]["sources"] = [str(changed)]
    (adapter / ADAPTER_METADATA).write_text(json.dumps(meta))
    with pytest.raises(CalibrationError, match="differs"):
        dev_split_of(adapter)
