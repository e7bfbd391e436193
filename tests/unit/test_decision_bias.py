import json

import numpy as np
import pytest

from shared.classifier.decision_bias import apply_bias, bias_from_metadata, bias_to_metadata
from shared.classifier.errors import ClassifierError
from shared.messages import CATEGORIES
from shared.training.cv import PREDICTIONS
from shared.training.data import Example
from shared.training.decision_bias import fit_bias, macro_f1, nested_bias_scores, read_fold_predictions

PRO, ANTI = 0, 1
assert [c.value for c in CATEGORIES][:2] == ["pro-immigration", "anti-immigration"]


def _confused(n: int, seed: int, pro_penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Noisy probabilities whose pro-immigration log-score is ``pro_penalty`` too low, as a model that learned
    to call pro tweets anti would give."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CATEGORIES), n)
    logits = rng.normal(0, 1.0, (n, len(CATEGORIES)))
    logits[np.arange(n), y] += 1.5
    logits[:, PRO] -= pro_penalty
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True), y


def test_apply_bias_shifts_the_decision_and_keeps_probabilities():
    probs = np.array([[0.30, 0.40, 0.20, 0.10], [0.05, 0.05, 0.10, 0.80]], dtype=np.float32)
    assert apply_bias(probs, None) is probs
    np.testing.assert_allclose(apply_bias(probs, np.zeros(4)), probs, atol=1e-6)
    shifted = apply_bias(probs, np.array([0.5, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(shifted.sum(axis=1), 1.0, atol=1e-6)
    assert shifted.argmax(axis=1).tolist() == [PRO, 3]  # 0.30·e^0.5 ≈ 0.49 > 0.40; the confident row keeps its label
    assert shifted.dtype == probs.dtype


def test_the_fitted_bias_undoes_a_systematic_confusion_and_stays_near_zero_without_one():
    probs, y = _confused(4000, 1, pro_penalty=1.0)
    bias = fit_bias(probs, y)
    assert 0.6 <= bias[PRO] - np.mean(bias[1:]) <= 1.4  # about the penalty, relative to the other classes
    assert bias[3] == 0.0
    fresh, y_fresh = _confused(4000, 2, pro_penalty=1.0)  # and it holds on predictions it was not fitted on
    assert macro_f1(y_fresh, apply_bias(fresh, bias)) > macro_f1(y_fresh, fresh) + 0.02

    fair, y_fair = _confused(4000, 3, pro_penalty=0.0)
    assert np.abs(fit_bias(fair, y_fair)).max() <= 0.25


def test_each_folds_bias_is_fitted_on_the_other_folds_only(tmp_path):
    examples, folds = [], {}
    for k in range(3):
        probs, y = _confused(600, 10 + k, pro_penalty=1.0)
        exs = [Example(id=f"{k}-{i}", lang="en" if i % 2 else "it", label=CATEGORIES[c], text="t")
               for i, c in enumerate(y)]
        examples += exs
        folds[f"fold-{k + 1}"] = (exs, probs)
        (tmp_path / f"fold-{k + 1}").mkdir()
        (tmp_path / f"fold-{k + 1}" / PREDICTIONS).write_text(
            json.dumps({"ids": [ex.id for ex in exs], "probs": probs.tolist()}))
    read = read_fold_predictions(tmp_path, examples)
    assert list(read) == ["fold-1", "fold-2", "fold-3"]
    np.testing.assert_allclose(read["fold-2"][1], folds["fold-2"][1])
    _, _, biases = nested_bias_scores(read)
    with pytest.raises(ValueError, match="at least two scored folds"):
        nested_bias_scores({"fold-1": read["fold-1"]})
    # Scrambling fold 1's own labels changes the biases of the folds fitted on it, never fold 1's own.
    rng = np.random.default_rng(0)
    scrambled = dict(read)
    exs, probs = read["fold-1"]
    scrambled["fold-1"] = ([Example(id=e.id, lang=e.lang, label=CATEGORIES[rng.integers(0, 4)], text=e.text)
                            for e in exs], probs)
    _, _, again = nested_bias_scores(scrambled)
    np.testing.assert_array_equal(again["fold-1"]["all"], biases["fold-1"]["all"])
    assert not np.array_equal(again["fold-2"]["all"], biases["fold-2"]["all"])


def test_a_fold_predicting_an_id_the_data_lacks_is_refused(tmp_path):
    (tmp_path / "fold-1").mkdir()
    (tmp_path / "fold-1" / PREDICTIONS).write_text(json.dumps({"ids": ["nope"], "probs": [[0.25] * 4]}))
    with pytest.raises(ValueError, match="not in the labeled data"):
        read_fold_predictions(tmp_path, [Example(id="a", lang="en", label=CATEGORIES[0], text="t")])


def test_the_metadata_form_round_trips_and_malformed_offsets_are_refused():
    bias = np.array([0.35, -0.1, 0.0, 0.0])
    np.testing.assert_allclose(bias_from_metadata({"decision_bias": bias_to_metadata(bias)}), bias)
    assert bias_from_metadata({}) is None
    for bad in ({"pro-immigration": 1.0}, [0.1, 0.2, 0.3, 0.0],
                dict(bias_to_metadata(bias), neutral="high"), dict(bias_to_metadata(bias), neutral=float("nan"))):
        with pytest.raises(ClassifierError, match="decision_bias"):
            bias_from_metadata({"decision_bias": bad})


def test_groups_with_opposite_confusions_get_biases_of_their_own():
    folds = {}
    for k in range(3):
        small, y_small = _confused(800, 20 + k, pro_penalty=1.0)  # the small languages under-call pro
        large, y_large = _confused(800, 30 + k, pro_penalty=-1.0)  # the large ones over-call it
        exs = ([Example(id=f"{k}-s{i}", lang="it", label=CATEGORIES[c], text="t") for i, c in enumerate(y_small)]
               + [Example(id=f"{k}-l{i}", lang="en", label=CATEGORIES[c], text="t") for i, c in enumerate(y_large)])
        folds[f"fold-{k + 1}"] = (exs, np.vstack([small, large]))
    _, global_biased, _ = nested_bias_scores(folds)
    _, grouped_biased, biases = nested_bias_scores(folds, group_of=lambda ex: "large" if ex.lang == "en" else "small")
    for name, per_group in biases.items():
        assert per_group["small"][PRO] > 0.4 and per_group["large"][PRO] < -0.4
        assert grouped_biased[name]["macro_f1"] > global_biased[name]["macro_f1"] + 0.02
