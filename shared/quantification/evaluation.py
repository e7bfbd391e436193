"""How far each share estimator lands from the true label shares of labeled tweets: per language as they come,
and under simulated shifts of the label mix (``eval`` reports both under ``quantification``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from shared.messages import CATEGORIES, Category
from shared.quantification.estimators import DEFAULT, ESTIMATORS, Calibration, estimate

_ANTI = CATEGORIES.index(Category.anti)


def _mae(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean over the four classes of |estimated share − true share|."""
    return float(np.abs(estimated - true).mean())


def share_errors(probs: np.ndarray, y_true: np.ndarray, langs: Sequence[str], calibration: Calibration | None,
                 corrected: str = DEFAULT) -> dict:
    """Per language and overall (the mean over languages, each language a group as an analyst would see it):
    the true shares, each estimator's shares and its mean absolute error. ``cc_mae``/``corrected_mae`` are the
    headline: classify-and-count against ``corrected``."""
    names = [n for n in ESTIMATORS if calibration is not None or n in ("cc", "pcc")]
    k = probs.shape[1]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        groups[lang].append(i)
    per_language = {}
    for lang, idx in sorted(groups.items()):
        true = np.bincount(y_true[idx], minlength=k) / len(idx)
        row: dict = {"n": len(idx), "true": true.round(4).tolist()}
        for name in names:
            shares = estimate(name, probs[idx], calibration)
            row[name] = shares.round(4).tolist()
            row[f"{name}_mae"] = round(_mae(shares, true), 4)
        per_language[lang] = row
    mean = {name: round(float(np.mean([r[f"{name}_mae"] for r in per_language.values()])), 4) for name in names}
    report = {"estimator": corrected if calibration is not None else None,
              "calibration": calibration.source if calibration is not None else None,
              "mae": mean, "cc_mae": mean["cc"], "per_language": per_language}
    if calibration is not None:
        report["corrected_mae"] = mean[corrected]
        report["languages_corrected_better"] = sum(r[f"{corrected}_mae"] < r["cc_mae"] for r in per_language.values())
    return report


def shift_simulation(probs: np.ndarray, y_true: np.ndarray, calibration: Calibration,
                     anti_shares: Sequence[float] = (0.1, 0.2, 0.35, 0.5), size: int = 300, draws: int = 200,
                     seed: int = 0) -> dict:
    """Groups of ``size`` tweets drawn (with replacement, per true class) so that the anti share is each of
    ``anti_shares`` and the other classes keep their relative shares in the labeled set; for each, the mean
    estimated anti share and the mean absolute error of all four shares, per estimator. Counting follows the
    classifier's habits; a corrected estimator should follow the truth."""
    rng = np.random.default_rng(seed)
    k = probs.shape[1]
    by_class = [np.nonzero(y_true == c)[0] for c in range(k)]
    base = np.array([len(rows) for rows in by_class], dtype=float)
    others = np.where(np.arange(k) == _ANTI, 0.0, base)
    rows_out = []
    for anti in anti_shares:
        true = others / others.sum() * (1 - anti)
        true[_ANTI] = anti
        counts = np.floor(true * size).astype(int)
        counts[np.argmax(true)] += size - counts.sum()
        true = counts / size
        result: dict = {"anti_share": anti, "size": size}
        estimates = defaultdict(list)
        for _ in range(draws):
            idx = np.concatenate([rng.choice(rows, n) for rows, n in zip(by_class, counts) if n and len(rows)])
            for name in ESTIMATORS:
                estimates[name].append(estimate(name, probs[idx], calibration))
        for name, values in estimates.items():
            values = np.array(values)
            result[name] = {"anti_estimate": round(float(values[:, _ANTI].mean()), 4),
                            "mae": round(float(np.abs(values - true).mean()), 4)}
        rows_out.append(result)
    return {"draws": draws, "rows": rows_out}
