"""A decision bias — per-class offsets added to the log-probabilities before the argmax, which moves the boundary
between classes a model systematically confuses without touching its weights — fitted on held-out predictions and
judged by nested cross-validation: each fold's bias is fitted on the other folds' held-out predictions only
(docs/experiments.md, cv06 and cv07: neither the shipped recipe nor balanced sampling gained from one, so
nothing serves one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from shared.messages import CATEGORIES, Category
from shared.training.cv import PREDICTIONS, fold_scores, kfold
from shared.training.data import Example, data_digest
from shared.training.metrics import f1_per_class, to_indices

#: Offsets tried for each stance class; unrelated stays at 0 (only differences between offsets matter).
GRID = np.round(np.arange(-1.5, 1.5001, 0.05), 2)
SWEEPS = 3
_FREE = [i for i, c in enumerate(CATEGORIES) if c is not Category.unrelated]


def apply_bias(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``probs`` (n, 4) shifted by ``bias`` in log space and renormalised: p·exp(b) / Σ p·exp(b)."""
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, None)) + bias
    logits -= logits.max(axis=1, keepdims=True)
    shifted = np.exp(logits)
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(probs.dtype)


def bias_as_dict(bias: np.ndarray) -> dict[str, float]:
    return {c.value: round(float(b), 4) for c, b in zip(CATEGORIES, bias)}


def fit_bias(probs: np.ndarray, y_true: np.ndarray, grid: np.ndarray = GRID, sweeps: int = SWEEPS) -> np.ndarray:
    """Offsets maximising macro-F1 on (``probs``, ``y_true``) by coordinate search over ``grid``: one class at a
    time, ``sweeps`` rounds, a move kept only if it raises macro-F1 (so without a gain the bias stays 0)."""
    log_probs = np.log(np.clip(probs.astype(np.float64), 1e-12, None))
    bias = np.zeros(len(CATEGORIES))

    def score(candidate: np.ndarray) -> float:
        return float(f1_per_class(y_true, (log_probs + candidate).argmax(axis=1)).mean())

    best = score(bias)
    for _ in range(sweeps):
        moved = False
        for cls in _FREE:
            for value in grid:
                candidate = bias.copy()
                candidate[cls] = value
                value_score = score(candidate)
                if value_score > best + 1e-12:
                    best, bias, moved = value_score, candidate, True
        if not moved:
            break
    return bias


def fit_group_biases(pairs: list[tuple[Example, np.ndarray]], group_of: Callable[[Example], str],
                     groups: list[str]) -> dict[str, np.ndarray]:
    """A bias for each of ``groups``, fitted on that group's (example, probabilities) pairs."""
    biases = {}
    for group in groups:
        rows = [(ex, p) for ex, p in pairs if group_of(ex) == group]
        biases[group] = fit_bias(np.array([p for _, p in rows]), to_indices([ex.label for ex, _ in rows]))
    return biases


def read_fold_predictions(folds_dir: Path, examples: list[Example], folds: int, seed: int = 0
                          ) -> dict[str, tuple[list[Example], np.ndarray]]:
    """Each scored fold's held-out examples and probabilities (``predictions.json``). Tweet ids need not be unique
    (train.csv repeats them across languages), so the held-out examples are the folds ``kfold`` rebuilds from the
    same data and seed, checked against the ids and the digest the fold recorded."""
    parts = kfold(examples, folds, seed)
    read = {}
    for path in sorted(folds_dir.glob(f"fold-*/{PREDICTIONS}")):
        saved = json.loads(path.read_text())
        index = int(path.parent.name.removeprefix("fold-")) - 1
        held_out = parts[index] if 0 <= index < folds else []
        recorded = json.loads((path.parent / "scores.json").read_text()).get("held_out_sha256_16")
        if [ex.id for ex in held_out] != saved["ids"] or data_digest(held_out) != recorded:
            raise ValueError(f"{path}: its tweets are not fold {index + 1} of {folds} (seed {seed}) of this data")
        read[path.parent.name] = (held_out, np.asarray(saved["probs"], dtype=np.float64))
    return read


def nested_bias_scores(folds: dict[str, tuple[list[Example], np.ndarray]],
                       group_of: Callable[[Example], str] = lambda ex: "all") -> tuple[dict, dict, dict]:
    """(plain, biased, biases): each fold's scores as predicted and with the bias fitted on the other folds only,
    and those biases (group → offsets). With ``group_of``, each group of tweets (say, the small languages) gets
    a bias of its own, fitted on that group's tweets of the other folds."""
    if len(folds) < 2:
        raise ValueError(f"a nested check needs at least two scored folds, got {len(folds)}")
    plain, biased, biases = {}, {}, {}
    for name, (examples, probs) in folds.items():
        others = [(ex, p) for other, (exs, ps) in folds.items() if other != name for ex, p in zip(exs, ps)]
        groups = [group_of(ex) for ex in examples]
        biases[name] = fit_group_biases(others, group_of, sorted(set(groups)))
        shifted = probs.copy()
        for group, bias in biases[name].items():
            rows = [i for i, g in enumerate(groups) if g == group]
            shifted[rows] = apply_bias(probs[rows], bias)
        plain[name] = fold_scores(examples, probs)
        biased[name] = fold_scores(examples, shifted)
    return plain, biased, biases
