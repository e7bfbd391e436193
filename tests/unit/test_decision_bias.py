"""The decision-bias check of cv06: the bias, its fit, and the nested cross-validation that judges it, fed with the
held-out predictions `run_cv` keeps."""

import numpy as np
import pytest

from shared.messages import CATEGORIES
from shared.training.config import TrainConfig
from shared.training.cv import kfold, run_cv
from shared.training.data import Example
from shared.training.decision_bias import apply_bias, fit_bias, nested_bias_scores, read_fold_predictions
from shared.training.metrics import f1_per_class

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


def macro_f1(y: np.ndarray, probs: np.ndarray) -> float:
    return float(f1_per_class(y, probs.argmax(axis=1)).mean())


def _examples(y: np.ndarray, prefix: str, lang: str = "it") -> list[Example]:
    return [Example(id=f"{prefix}{i}", lang=lang, label=CATEGORIES[c], text="t") for i, c in enumerate(y)]


def test_apply_bias_shifts_the_decision_and_keeps_probabilities():
    probs = np.array([[0.30, 0.40, 0.20, 0.10], [0.05, 0.05, 0.10, 0.80]], dtype=np.float32)
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


def test_each_folds_bias_is_fitted_on_the_other_folds_only():
    folds = {}
    for k in range(3):
        probs, y = _confused(600, 10 + k, pro_penalty=1.0)
        folds[f"fold-{k + 1}"] = (_examples(y, f"{k}-"), probs)
    _, biased, biases = nested_bias_scores(folds)
    assert all(biased[name]["macro_f1"] > 0 for name in folds)
    # Scrambling fold 1's own labels changes the biases of the folds fitted on it, never fold 1's own.
    exs, probs = folds["fold-1"]
    scrambled = dict(folds, **{"fold-1": (_examples(np.random.default_rng(0).integers(0, 4, len(exs)), "0-"), probs)})
    _, _, again = nested_bias_scores(scrambled)
    np.testing.assert_array_equal(again["fold-1"]["all"], biases["fold-1"]["all"])
    assert not np.array_equal(again["fold-2"]["all"], biases["fold-2"]["all"])
    with pytest.raises(ValueError, match="at least two scored folds"):
        nested_bias_scores({"fold-1": folds["fold-1"]})


def test_groups_with_opposite_confusions_get_biases_of_their_own():
    folds = {}
    for k in range(3):
        small, y_small = _confused(800, 20 + k, pro_penalty=1.0)  # the small languages under-call pro
        large, y_large = _confused(800, 30 + k, pro_penalty=-1.0)  # the large ones over-call it
        folds[f"fold-{k + 1}"] = (_examples(y_small, f"{k}-s") + _examples(y_large, f"{k}-l", "en"),
                                  np.vstack([small, large]))
    _, global_biased, _ = nested_bias_scores(folds)
    _, grouped_biased, biases = nested_bias_scores(folds, group_of=lambda ex: "large" if ex.lang == "en" else "small")
    for name, per_group in biases.items():
        assert per_group["small"][PRO] > 0.4 and per_group["large"][PRO] < -0.4
        assert grouped_biased[name]["macro_f1"] > global_biased[name]["macro_f1"] + 0.02


def test_kept_predictions_line_up_with_their_tweets_even_when_ids_repeat(tmp_path):
    """train.csv repeats ids across languages (389 distinct in 2,625 rows): the kept predictions must be matched to
    their fold's tweets by position, never looked up by id."""
    examples = [Example(id=str(i % 7), lang=lang, label=CATEGORIES[(i + j) % 4], text=f"{lang} {i}")
                for j, lang in enumerate(("en", "es", "it")) for i in range(24)]

    def train_fold(train_set, directory, resume):  # a stand-in "model" whose answer is a function of the text
        return lambda texts: np.array([np.eye(4)[sum(map(ord, t)) % 4] * 0.9 + 0.025 for t in texts])

    run_cv(examples, tmp_path / "cv", TrainConfig(), train_fold, folds=3, seed=5, log=lambda _: None)
    read = read_fold_predictions(tmp_path / "cv", examples, folds=3, seed=5)
    assert list(read) == ["fold-1", "fold-2", "fold-3"]
    for (held_out, probs), part in zip(read.values(), kfold(examples, 3, seed=5)):
        assert held_out == part
        assert probs.argmax(axis=1).tolist() == [sum(map(ord, ex.text)) % 4 for ex in held_out]
    with pytest.raises(ValueError, match="not fold 1 of 3"):
        read_fold_predictions(tmp_path / "cv", examples, folds=3, seed=6)  # other folds than the ones scored
