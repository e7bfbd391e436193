"""A decision bias: per-class offsets added to the log-probabilities before the argmax, so that the served
probabilities are p·exp(b), renormalised. It moves the boundary between classes a model systematically confuses
(a prior the training data taught it that the decision should not keep) without touching the weights. An adapter
carries it in its metadata as ``decision_bias`` (label → offset); ``shared.training.decision_bias`` fits it."""

from __future__ import annotations

import numpy as np

from shared.classifier.errors import ClassifierError
from shared.messages import CATEGORIES

METADATA_KEY = "decision_bias"


def bias_from_metadata(metadata: dict) -> np.ndarray | None:
    """The adapter's offsets in ``CATEGORIES`` order, or None when it has none; ClassifierError if malformed."""
    recorded = metadata.get(METADATA_KEY)
    if recorded is None:
        return None
    labels = [c.value for c in CATEGORIES]
    if not isinstance(recorded, dict) or set(recorded) != set(labels):
        raise ClassifierError(f"decision_bias must give an offset for each of {', '.join(labels)}, got {recorded!r}")
    try:
        bias = np.array([float(recorded[label]) for label in labels], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClassifierError(f"decision_bias has a non-numeric offset: {recorded!r}") from exc
    if not np.all(np.isfinite(bias)):
        raise ClassifierError(f"decision_bias has a non-finite offset: {recorded!r}")
    return bias


def bias_to_metadata(bias: np.ndarray) -> dict[str, float]:
    return {c.value: round(float(b), 4) for c, b in zip(CATEGORIES, bias)}


def apply_bias(probs: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``probs`` (n, 4) shifted by ``bias`` in log space and renormalised; unchanged when there is no bias."""
    if bias is None or len(probs) == 0:
        return probs
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, None)) + bias
    logits -= logits.max(axis=1, keepdims=True)
    shifted = np.exp(logits)
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(probs.dtype)
