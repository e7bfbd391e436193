"""Share estimators: what fraction of a group of tweets is pro / anti / neutral / unrelated.

Counting predicted labels (classify and count, CC) is biased whenever the classifier's errors are uneven: if
pro tweets are often predicted anti, CC overstates anti in every group. The adjusted estimators undo that with
the classifier's behaviour measured on labeled tweets it never trained on (``Calibration``):

- **PCC** (probabilistic CC): the mean of the predicted probabilities.
- **ACC** (adjusted CC, Forman 2008): observed predicted-label shares q = Mᵀp, where M[i, j] = P(predicted j |
  true i); solve for the true shares p.
- **PACC** (probabilistic ACC, Bella et al. 2010): the same with mean probabilities instead of hard counts.
- **SLD** (Saerens, Latinne & Decaestecker 2002): EM that re-weights each tweet's probabilities from the
  calibration priors to the group's, until the group's priors stop moving.
- **PACC-S** (shrunk PACC): PACC is unbiased but noisy on small groups (the adjustment divides by the
  classifier's accuracy per class), PCC is steady but biased when the mix moves away from the training mix. A
  group's estimate is w·PACC + (1−w)·PCC with w = d² / (d² + v), d² the squared distance between the two and v
  PACC's variance over bootstrap resamples of the group: where they differ by no more than PACC's own noise, PCC
  is kept; a real shift (d² ≫ v) gets PACC. No parameter to tune (a James–Stein-style weight).
- **CPCC** (calibrated PCC, Bella et al. 2010): PCC of the probabilities recalibrated on the calibration tweets
  by bias-corrected temperature scaling (BCTS: softmax(log p / T + b), T and b fitted by maximum likelihood).
  It undoes the classifier's systematic lean (e.g. pro tweets given anti probability) without dividing by its
  accuracy, so it stays steady on small groups; it is still biased toward the calibration mix under a shift.
- **SLD-BCTS** (Alexandari et al. 2020, "maximum likelihood with bias-corrected calibration"): SLD's EM run on
  the BCTS-recalibrated probabilities, from the calibration tweets' priors — the priors those probabilities
  actually reflect. Plain SLD assumes calibrated posteriors, which a fine-tuned classifier's are not.

ACC and PACC solve q = Mᵀp by least squares on the probability simplex (p ≥ 0, Σp = 1), so a noisy group
never yields a negative share. Intervals: ``bootstrap`` resamples the group's tweets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

#: Estimator names, in the order they are reported; ``DEFAULT`` is the corrected estimator the product serves,
#: chosen among the corrected ones (all but cc and pcc) by the rule of benchmarks/quantifier_choice.py on the shipped adapter's
#: dev split (docs/quantification.md).
ESTIMATORS = ("cc", "pcc", "acc", "pacc", "sld", "pacc-s", "cpcc", "sld-bcts")
DEFAULT = "cpcc"


@dataclass(frozen=True)
class Calibration:
    """How the classifier behaves on labeled tweets it never trained on, per true class (rows) and predicted
    class (columns): ``hard`` = P(predicted j | true i), ``soft`` = mean probability of j given true i."""

    hard: np.ndarray
    soft: np.ndarray
    priors: np.ndarray  # the true shares of the calibration tweets (SLD starts from them)
    n: int
    source: str = ""
    # BCTS recalibration of the probabilities: softmax(log p / temperature + bias); identity when absent
    temperature: float = 1.0
    bias: np.ndarray | None = None

    @classmethod
    def measure(cls, probs: np.ndarray, y_true: np.ndarray, source: str = "") -> "Calibration":
        k = probs.shape[1]
        hard, soft = np.zeros((k, k)), np.zeros((k, k))
        predicted = probs.argmax(axis=1)
        for i in range(k):
            rows = y_true == i
            if rows.any():
                hard[i] = np.bincount(predicted[rows], minlength=k) / rows.sum()
                soft[i] = probs[rows].mean(axis=0)
            else:  # a class the labeled set lacks: assume the classifier gets it right rather than divide by 0
                hard[i, i] = soft[i, i] = 1.0
        priors = np.bincount(y_true, minlength=k) / max(len(y_true), 1)
        temperature, bias = fit_bcts(probs, y_true) if len(y_true) else (1.0, np.zeros(k))
        return cls(hard, soft, priors, int(len(y_true)), source, temperature, bias)

    def recalibrate(self, probs: np.ndarray) -> np.ndarray:
        """The probabilities recalibrated by the fitted BCTS (unchanged for a calibration saved before it)."""
        if self.bias is None:
            return probs
        return _softmax(np.log(np.clip(probs, 1e-12, None)) / self.temperature + self.bias)

    def to_json(self) -> dict:
        data = {"hard": self.hard.round(6).tolist(), "soft": self.soft.round(6).tolist(),
                "priors": self.priors.round(6).tolist(), "n": self.n, "source": self.source}
        if self.bias is not None:
            data["bcts"] = {"temperature": round(self.temperature, 6), "bias": self.bias.round(6).tolist()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        bcts = data.get("bcts")
        return cls(np.array(data["hard"], dtype=float), np.array(data["soft"], dtype=float),
                   np.array(data["priors"], dtype=float), int(data["n"]), data.get("source", ""),
                   float(bcts["temperature"]) if bcts else 1.0, np.array(bcts["bias"], dtype=float) if bcts else None)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        return cls.from_json(json.loads(path.read_text()))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_bcts(probs: np.ndarray, y_true: np.ndarray, ridge: float = 1e-2, iterations: int = 50
             ) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (Alexandari et al. 2020): the a = 1/T and bias b minimising the
    negative log-likelihood of softmax(a·log p + b) on labeled tweets, by Newton's method (the problem is convex
    in (a, b)); a small ridge on b keeps it defined when a class is missing and fixes b's free constant."""
    n, k = probs.shape
    logp = np.log(np.clip(probs, 1e-12, None))
    onehot = np.eye(k)[y_true]
    theta = np.concatenate([[1.0], np.zeros(k)])  # a, b

    def loss(t: np.ndarray) -> float:
        q = _softmax(t[0] * logp + t[1:])
        return float(-np.log(np.clip(q[np.arange(n), y_true], 1e-300, None)).sum() + ridge * (t[1:] ** 2).sum())

    current = loss(theta)
    for _ in range(iterations):
        q = _softmax(theta[0] * logp + theta[1:])
        residual = q - onehot
        grad = np.concatenate([[(residual * logp).sum()], residual.sum(axis=0)]) + np.concatenate(
            [[0.0], 2 * ridge * theta[1:]])
        jac = np.concatenate([logp[:, :, None], np.broadcast_to(np.eye(k), (n, k, k))], axis=2)  # n × k × (k+1)
        cov = q[:, :, None] * np.eye(k) - q[:, :, None] * q[:, None, :]
        hess = np.einsum("nki,nkl,nlj->ij", jac, cov, jac) + np.diag(np.concatenate([[0.0], np.full(k, 2 * ridge)]))
        step = np.linalg.solve(hess + 1e-9 * np.eye(k + 1), grad)
        scale = 1.0
        while scale > 1e-4 and loss(theta - scale * step) > current:
            scale /= 2
        if scale <= 1e-4:
            break
        theta = theta - scale * step
        updated = loss(theta)
        if current - updated < 1e-9:
            current = updated
            break
        current = updated
    a = max(float(theta[0]), 1e-3)
    return 1.0 / a, theta[1:]


def simplex_least_squares(matrix: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """argmin ‖matrixᵀ·p − observed‖² over the probability simplex (p ≥ 0, Σp = 1), exactly: the optimum of a
    convex problem lies inside some face of the simplex, where it is that face's equality-constrained optimum,
    so solve the KKT system on every face (15 for 4 classes) and keep the best feasible one."""
    a = matrix.T
    k = a.shape[1]
    best, best_loss = np.full(k, 1.0 / k), np.inf
    for mask in range(1, 2**k):
        face = [j for j in range(k) if mask >> j & 1]
        sub = a[:, face]
        n = len(face)
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n], kkt[:n, n], kkt[n, :n] = 2 * sub.T @ sub, 1.0, 1.0
        rhs = np.concatenate([2 * sub.T @ observed, [1.0]])
        try:
            solution = np.linalg.solve(kkt, rhs)[:n]
        except np.linalg.LinAlgError:
            continue
        if solution.min() < -1e-12:
            continue
        p = np.zeros(k)
        p[face] = np.maximum(solution, 0.0)
        loss = float(((a @ p - observed) ** 2).sum())
        if loss < best_loss - 1e-15:
            best, best_loss = p / p.sum(), loss
    return best


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {p ≥ 0, Σp = 1} (sort-based, Held et al. 1974)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1
    rho = np.nonzero(u - cumulative / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1), 0.0)


def classify_and_count(probs: np.ndarray) -> np.ndarray:
    return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / max(len(probs), 1)


def probabilistic_cc(probs: np.ndarray) -> np.ndarray:
    return probs.mean(axis=0) if len(probs) else np.full(probs.shape[1], 1.0 / probs.shape[1])


def sld(probs: np.ndarray, priors: np.ndarray, iterations: int = 1000, tolerance: float = 1e-6) -> np.ndarray:
    """Saerens et al.'s EM prior adjustment; returns the group's estimated priors."""
    if not len(probs):
        return priors.copy()
    train = np.clip(priors, 1e-6, None)
    current = train.copy()
    for _ in range(iterations):
        weighted = probs * (current / train)
        weighted /= weighted.sum(axis=1, keepdims=True)
        updated = weighted.mean(axis=0)
        if np.abs(updated - current).max() < tolerance:
            return updated
        current = updated
    return current


def estimate(name: str, probs: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """Shares of the group ``probs`` (n × k probabilities) by estimator ``name``."""
    if name == "cc":
        return classify_and_count(probs)
    if name == "pcc":
        return probabilistic_cc(probs)
    if calibration is None:
        raise ValueError(f"estimator {name!r} needs the adapter's calibration")
    if name == "acc":
        return simplex_least_squares(calibration.hard, classify_and_count(probs))
    if name == "pacc":
        return simplex_least_squares(calibration.soft, probabilistic_cc(probs))
    if name == "sld":
        return sld(probs, calibration.priors)
    if name == "pacc-s":
        return shrunk_pacc(probs, calibration)
    if name == "cpcc":
        return probabilistic_cc(calibration.recalibrate(probs))
    if name == "sld-bcts":
        return sld(calibration.recalibrate(probs), calibration.priors)
    raise ValueError(f"unknown estimator {name!r}; one of {', '.join(ESTIMATORS)}")


def shrunk_pacc(probs: np.ndarray, calibration: Calibration, resamples: int = 30, seed: int = 0) -> np.ndarray:
    """PACC-S (module docstring)."""
    pcc = probabilistic_cc(probs)
    pacc = simplex_least_squares(calibration.soft, pcc)
    if len(probs) < 2:
        return pcc
    rng = np.random.default_rng(seed)
    draws = np.array([simplex_least_squares(calibration.soft, probabilistic_cc(probs[rng.integers(0, len(probs),
                                                                                               len(probs))]))
                      for _ in range(resamples)])
    variance = float(draws.var(axis=0).sum())
    distance = float(((pacc - pcc) ** 2).sum())
    weight = distance / (distance + variance) if distance + variance > 0 else 1.0
    return weight * pacc + (1 - weight) * pcc


def bootstrap(probs: np.ndarray, estimator: Callable[[np.ndarray], np.ndarray], resamples: int = 200,
              seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per-class percentile interval of ``estimator`` over resamples of the group's tweets."""
    rng = np.random.default_rng(seed)
    draws = np.array([estimator(probs[rng.integers(0, len(probs), len(probs))]) for _ in range(resamples)])
    tail = (1 - level) / 2 * 100
    return np.percentile(draws, tail, axis=0), np.percentile(draws, 100 - tail, axis=0)


#: The file beside an adapter's weights holding its ``Calibration``.
CALIBRATION_FILE = "quantification.json"


def adapter_calibration(adapter_dir: Path | None) -> Calibration | None:
    """The calibration saved with an adapter, or None (the base model alone, or an adapter made before it)."""
    path = adapter_dir / CALIBRATION_FILE if adapter_dir is not None else None
    return Calibration.load(path) if path is not None and path.exists() else None
