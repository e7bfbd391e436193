"""Classification metrics of the paper (accuracy, macro-F1, topic and stance accuracy) plus calibration."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from shared.messages import CATEGORIES, Category

_INDEX = {label: i for i, label in enumerate(CATEGORIES)}
_UNRELATED = _INDEX[Category.unrelated]


def to_indices(labels: Sequence[str | Category]) -> np.ndarray:
    return np.array([_INDEX[Category(label)] for label in labels], dtype=np.int64)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(CATEGORIES), len(CATEGORIES)), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    matrix = confusion(y_true, y_pred)
    tp = np.diag(matrix).astype(float)
    precision = np.divide(tp, matrix.sum(axis=0), out=np.zeros_like(tp), where=matrix.sum(axis=0) > 0)
    recall = np.divide(tp, matrix.sum(axis=1), out=np.zeros_like(tp), where=matrix.sum(axis=1) > 0)
    return np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> float:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """accuracy, macro-F1, per-class F1, topic accuracy and stance accuracy on immigration-related tweets."""
    f1 = f1_per_class(y_true, y_pred)
    related = y_true != _UNRELATED
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class_f1": {label.value: float(v) for label, v in zip(CATEGORIES, f1)},
        "topic_accuracy": float(((y_true == _UNRELATED) == (y_pred == _UNRELATED)).mean()) if len(y_true) else 0.0,
        "stance_accuracy": float((y_true[related] == y_pred[related]).mean()) if related.any() else 0.0,
    }


def per_language(langs: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        groups[lang].append(i)
    out = {}
    for lang, idx in sorted(groups.items()):
        s = scores(y_true[idx], y_pred[idx])
        out[lang] = {"n": s["n"], "accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
    return out
