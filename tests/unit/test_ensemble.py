"""An ensemble of adapters on the same top layers: one pass of the frozen layers, the members' mean."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from commands import cli_env, run_cli
from labeled import TEXTS, TINY_RECIPE, write_labeled_csv
from shared.classifier.ensemble import AdapterEnsemble
from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.training.config import TrainConfig
from shared.training.data import read_labeled
from shared.training.loop import train

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def members(tmp_path_factory, tiny_settings):
    root = tmp_path_factory.mktemp("ensemble")
    examples = read_labeled([write_labeled_csv(root / "d.csv", n_per_cell=4)])
    return [train(tiny_settings, examples, root / f"m{seed}", TrainConfig(**TINY_RECIPE, train_layers=1, seed=seed),
                  version=f"m{seed}", progress=False).adapter_dir for seed in (1, 2)]


def test_the_ensemble_scores_the_mean_of_its_members(tiny_settings, members):
    texts = list(TEXTS.values()) + ["a much longer tweet about the border and the people who cross it every day"]
    singles = [StanceClassifier.load(tiny_settings, adapter=m).predict_proba(texts) for m in members]
    assert not np.allclose(singles[0], singles[1], atol=1e-4), "members must differ, or the mean proves nothing"
    ensemble = AdapterEnsemble(StanceClassifier.load(tiny_settings, adapter=None), members)
    assert np.allclose(ensemble.predict_proba(texts), np.mean(singles, axis=0), atol=1e-5)
    assert ensemble.adapter_version == "m1+m2"


def test_members_must_adapt_the_same_top_layers(tmp_path, tiny_settings, members, tiny_adapter):
    with pytest.raises(ClassifierError, match="same top layers"):
        AdapterEnsemble(StanceClassifier.load(tiny_settings, adapter=None), [members[0], tiny_adapter])
    with pytest.raises(ClassifierError, match="at least two"):
        AdapterEnsemble(StanceClassifier.load(tiny_settings, adapter=None), members[:1])


def test_eval_with_two_adapters_scores_their_ensemble(tmp_path, tiny_model_dir, members):
    data = write_labeled_csv(tmp_path / "test.csv", n_per_cell=2)
    result = run_cli("eval", "--data", str(data), "--adapter", str(members[0]), "--adapter", str(members[1]),
                     "--out", str(tmp_path / "out"), env=cli_env(tmp_path, tiny_model_dir), timeout=300)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    assert "m1+m2" in (tmp_path / "out" / "metrics.json").read_text()
