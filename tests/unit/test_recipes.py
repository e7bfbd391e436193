"""Training recipes aimed at cross-lingual stance: the consistency term between a tweet and its English
translation, and class-balanced sampling per language."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from labeled import TEXTS, labeled_rows, write_labeled_csv
from shared.classifier.model import StanceClassifier
from shared.training.config import TrainConfig
from shared.training.data import balanced_sampling_weights, read_labeled
from shared.training.loop import consistency_loss, train


def test_balanced_sampling_keeps_each_language_share_and_evens_its_labels(tmp_path):
    rows = labeled_rows(n_per_cell=2, langs=("es",))
    rows += [dict(r, id=f"{r['id']}-more{k}") for r in rows if r["label"] == "unrelated" for k in range(6)]
    rows += labeled_rows(n_per_cell=5, langs=("en",), prefix="e")
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", rows=rows)])
    weights = balanced_sampling_weights(examples)
    assert weights.sum() == pytest.approx(1.0)
    by_lang, by_stratum = Counter(), Counter()
    for ex, w in zip(examples, weights):
        by_lang[ex.lang] += w
        by_stratum[(ex.lang, ex.label)] += w
    share_es = sum(ex.lang == "es" for ex in examples) / len(examples)
    assert by_lang["es"] == pytest.approx(share_es)  # the language keeps its share of the data
    es = [v for (lang, _), v in by_stratum.items() if lang == "es"]
    assert max(es) == pytest.approx(min(es))  # 14 unrelated vs 2 of each other label, drawn equally often


def test_stance_balanced_sampling_evens_only_the_stance_labels_and_keeps_unrelated_at_its_share(tmp_path):
    rows = labeled_rows(n_per_cell=2, langs=("es",))
    rows += [dict(r, id=f"{r['id']}-more{k}") for r in rows if r["label"] == "unrelated" for k in range(6)]
    rows += [dict(r, id=f"{r['id']}-pro{k}") for r in rows if r["label"] == "pro-immigration" for k in range(3)]
    rows += labeled_rows(n_per_cell=5, langs=("en",), prefix="e")
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", rows=rows)])
    weights = balanced_sampling_weights(examples, stance_only=True)
    assert weights.sum() == pytest.approx(1.0)
    by_lang, by_stratum = Counter(), Counter()
    for ex, w in zip(examples, weights):
        by_lang[ex.lang] += w
        by_stratum[(ex.lang, ex.label.value)] += w
    es = [ex for ex in examples if ex.lang == "es"]  # 14 unrelated, 8 pro, 2 anti, 2 neutral
    assert by_lang["es"] == pytest.approx(len(es) / len(examples))
    unrelated_share = sum(ex.label.value == "unrelated" for ex in es) / len(examples)
    assert by_stratum[("es", "unrelated")] == pytest.approx(unrelated_share)  # drawn at its natural rate
    stance = [by_stratum[("es", label)] for label in ("pro-immigration", "anti-immigration", "neutral")]
    assert max(stance) == pytest.approx(min(stance)) and sum(stance) == pytest.approx(12 / len(examples))
    assert not np.allclose(weights, balanced_sampling_weights(examples))


def test_consistency_loss_is_zero_for_agreement_symmetric_and_pulls_both_sides():
    import torch

    a = torch.tensor([[2.0, 0.0, -1.0, 0.5]], requires_grad=True)
    b = torch.tensor([[0.0, 1.5, 0.0, 0.0]], requires_grad=True)
    assert consistency_loss(a, a.detach().clone()).item() == pytest.approx(0.0, abs=1e-7)
    loss = consistency_loss(a, b)
    assert loss.item() > 0.1 and loss.item() == pytest.approx(consistency_loss(b, a).item())
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def _symmetric_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(0.5 * ((p * np.log(p / q)).sum(axis=1) + (q * np.log(q / p)).sum(axis=1))))


@pytest.mark.model
def test_consistency_training_brings_a_tweet_and_its_translation_closer(tmp_path, tiny_settings):
    # Spanish rows carry an English translation worded unlike the tweet; English rows have none.
    rows = labeled_rows(n_per_cell=5, langs=("es",)) + labeled_rows(n_per_cell=5, langs=("en",), prefix="e")
    for row in rows:
        if row["lang"] == "es":
            row["text"] = f"es {row['text']}"
            row["translation_en"] = f"translated {TEXTS[row['label']].split()[0]} {row['id'][-1]} story"
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", rows=rows)])
    recipe = dict(epochs=2, batch_size=8, eval_every=100, learning_rate=5e-3, dev_fraction=0.0, max_tokens=32)
    runs = {}
    for weight in (0.0, 5.0):
        result = train(tiny_settings, examples, tmp_path / f"run-{weight}", TrainConfig(**recipe, consistency=weight),
                       progress=False)
        runs[weight] = StanceClassifier.load(tiny_settings, adapter=result.adapter_dir)
        meta = json.loads((result.adapter_dir / "stancestream.json").read_text())
        assert meta["hyperparameters"]["consistency"] == weight
        assert meta["data"]["consistency_pairs"] == (20 if weight else 0)
    spanish = [ex for ex in examples if ex.lang == "es"]
    gaps = {w: _symmetric_kl(c.predict_proba([ex.text for ex in spanish]),
                             c.predict_proba([ex.translation_en for ex in spanish])) for w, c in runs.items()}
    assert gaps[5.0] < gaps[0.0] / 2, gaps


@pytest.mark.model
def test_recipe_options_refuse_nonsense_and_consistency_needs_translations(tmp_path, tiny_settings):
    with pytest.raises(ValueError, match="--sampling must be one of"):
        TrainConfig(sampling="stratified")
    with pytest.raises(ValueError, match="--consistency must be >= 0"):
        TrainConfig(consistency=-1)
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=4)])  # no translations
    with pytest.raises(ValueError, match="needs non-English training tweets with a translation_en"):
        train(tiny_settings, examples, tmp_path / "run", TrainConfig(consistency=1.0, dev_fraction=0.2),
              progress=False)


@pytest.mark.model
def test_weight_decay_pulls_the_adapter_toward_the_base_model_and_is_recorded(tmp_path, tiny_settings):
    from safetensors.torch import load_file

    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=4)])
    norms = {}
    for decay in (0.0, 200.0):  # lr 5e-3 × 200 shrinks every weight by 63 % a step: visible in a dozen steps
        result = train(tiny_settings, examples, tmp_path / f"run-{decay}",
                       TrainConfig(epochs=1, batch_size=8, eval_every=100, learning_rate=5e-3, dev_fraction=0.0,
                                   max_tokens=32, weight_decay=decay), progress=False)
        weights = load_file(result.adapter_dir / "adapter_model.safetensors")
        norms[decay] = sum(float(w.float().norm()) for name, w in weights.items() if "lora_A" in name)
        assert json.loads((result.adapter_dir / "stancestream.json").read_text())["hyperparameters"][
            "weight_decay"] == decay
    assert norms[200.0] < norms[0.0] / 2, norms
    with pytest.raises(ValueError, match="--weight-decay must be >= 0"):
        TrainConfig(weight_decay=-0.1)


@pytest.mark.model
def test_balanced_sampling_trains_and_is_recorded(tmp_path, tiny_settings):
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=4)])
    result = train(tiny_settings, examples, tmp_path / "run",
                   TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2,
                               max_tokens=32, sampling="balanced"), progress=False)
    assert json.loads((result.adapter_dir / "stancestream.json").read_text())["hyperparameters"]["sampling"] \
        == "balanced"
