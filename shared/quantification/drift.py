"""Drift of the live stream, per language: how far the last window of live tweets moved from a reference window
in its label mix (population stability index), its confidence distribution (Jensen–Shannon distance) and its
share of low-confidence tweets; and, over all languages, the share of tweets in languages the adapter never saw
in training. Pure: the counts come in, judgements and the alarms that changed come out
(``shared/quantification/drift_check.py`` reads the store and writes the ``drift`` table).

An alarm is per (language, measure). ``DriftMonitor`` keeps which ones are on, so a crossing is logged once: a
WARNING when it starts, an INFO when it clears, nothing while it stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping, Sequence

import numpy as np

from shared.messages import CATEGORIES

log = logging.getLogger(__name__)

#: Measure -> how the monitor and the log name it.
MEASURES = {
    "label_psi": "label mix PSI",
    "confidence_js": "confidence JS distance",
    "low_confidence_rise": "low-confidence share rise",
    "unseen_language_share": "share of tweets in languages the adapter never saw",
}
PER_LANGUAGE = ("label_psi", "confidence_js", "low_confidence_rise")
#: The ``lang`` of the one measure taken over all languages.
ALL_LANGUAGES = "all"
#: 10 confidence bins on [0.25, 1]: a tweet's highest probability of four is never below 0.25. Rounded so that
#: ClickHouse, which bins the stored tweets with the same edges, parses exactly these doubles.
CONFIDENCE_EDGES = tuple(round(0.25 + 0.075 * k, 4) for k in range(11))
#: Stands in for an empty bin's share in PSI (whose log ratio is infinite otherwise).
PSI_EPSILON = 1e-4


def _shares(counts: Sequence[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or (counts < 0).any():
        raise ValueError(f"not a distribution: {counts.tolist()}")
    return counts / total


def psi(reference: Sequence[float], window: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``window`` against ``reference`` (counts or shares per bin):
    sum((w - r) * ln(w / r)), empty bins counted as ``epsilon``. Below 0.1: stable; above 0.25: a significant shift."""
    r = np.maximum(_shares(reference), epsilon)
    w = np.maximum(_shares(window), epsilon)
    return float(np.sum((w - r) * np.log(w / r)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon distance (base 2, so in [0, 1]) of two distributions given as counts or shares: the square
    root of the mean Kullback–Leibler divergence of each from their average."""
    p, q = _shares(p), _shares(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0  # 0 log 0 = 0; where a > 0, m > 0 too
        return float(np.sum(a[nonzero] * np.log2(a[nonzero] / m[nonzero])))

    return float(np.sqrt(np.clip((kl(p) + kl(q)) / 2, 0.0, 1.0)))


def confidence_histogram(confidences: Sequence[float]) -> np.ndarray:
    """Tweets per confidence bin (``CONFIDENCE_EDGES``; a bin holds its lower edge, the last one also 1.0)."""
    inner = np.asarray(CONFIDENCE_EDGES[1:-1])
    bins = np.searchsorted(inner, np.asarray(confidences, dtype=np.float64), side="right")
    return np.bincount(bins, minlength=len(inner) + 1)


@dataclass(frozen=True)
class WindowStats:
    """What the measures need of one language's tweets in one window."""

    labels: tuple[int, ...]  # tweets per label, in CATEGORIES order
    confidence: tuple[int, ...]  # tweets per confidence bin
    low_confidence: int  # tweets whose highest probability is below the low-confidence threshold

    @property
    def n(self) -> int:
        return sum(self.labels)

    @classmethod
    def of(cls, labels: Sequence[str], confidences: Sequence[float], low_confidence: float) -> "WindowStats":
        """From each tweet's label and highest probability."""
        return cls(tuple(sum(1 for label in labels if label == c.value) for c in CATEGORIES),
                   tuple(int(n) for n in confidence_histogram(confidences)),
                   sum(1 for c in confidences if c < low_confidence))

    @classmethod
    def from_counts(cls, labels: Mapping[str, int], bins: Mapping[int, int], low_confidence: int) -> "WindowStats":
        """From counts per label value and per bin index (what the store returns)."""
        return cls(tuple(int(labels.get(c.value, 0)) for c in CATEGORIES),
                   tuple(int(bins.get(k, 0)) for k in range(len(CONFIDENCE_EDGES) - 1)), int(low_confidence))


@dataclass(frozen=True)
class DriftThresholds:
    """An alarm is on while its measure is above its threshold."""

    label_psi: float = 0.25  # the usual PSI rule: above 0.25, a significant shift
    confidence_js: float = 0.2
    low_confidence_rise: float = 0.1  # share points more low-confidence tweets than in the reference
    unseen_language_share: float = 0.2

    def of(self, measure: str) -> float:
        return getattr(self, measure)


def describe(lang: str, measure: str, value: float | None, threshold: float) -> str:
    """One judgement as the monitor and the log show it, e.g. ``tr label mix PSI 0.41 (> 0.25)``."""
    name = MEASURES.get(measure, measure) if lang == ALL_LANGUAGES else f"{lang} {MEASURES.get(measure, measure)}"
    if value is None:
        return f"{name} not judged"
    return f"{name} {value:.2f} ({'>' if value > threshold else '≤'} {threshold:.2f})"


@dataclass(frozen=True)
class DriftRow:
    """One judgement of one (language, measure); ``value`` None: not judged (too few tweets in a window)."""

    lang: str
    measure: str
    value: float | None
    threshold: float
    alarm: bool
    window_tweets: int
    reference_tweets: int

    @property
    def key(self) -> tuple[str, str]:
        return self.lang, self.measure

    def describe(self) -> str:
        return describe(self.lang, self.measure, self.value, self.threshold)


@dataclass
class DriftResult:
    rows: list[DriftRow]
    started: list[DriftRow] = field(default_factory=list)  # alarms that went on with this evaluation
    cleared: list[DriftRow] = field(default_factory=list)  # alarms that went off


class DriftMonitor:
    """Judges each evaluation and remembers which alarms are on. ``alarms``: those on before (the ``drift``
    table's latest state when a trainer restarts), so a restart neither repeats nor loses a crossing."""

    def __init__(self, thresholds: DriftThresholds = DriftThresholds(), min_tweets: int = 50,
                 alarms: Iterable[tuple[str, str]] = ()):
        self.thresholds = thresholds
        self.min_tweets = min_tweets
        self.alarms: set[tuple[str, str]] = set(alarms)

    def evaluate(self, reference: Mapping[str, WindowStats], window: Mapping[str, WindowStats],
                 training_languages: Collection[str] | None = None) -> DriftResult:
        """Rows: every (language, measure) judged (enough tweets in both windows), the global unseen-language
        share (None without ``training_languages``: the adapter does not say what it saw), and a row for each
        alarm that was on and can no longer be judged (it clears: no evidence is no alarm)."""
        rows = []
        for lang in sorted(reference.keys() & window.keys()):
            ref, win = reference[lang], window[lang]
            if ref.n < self.min_tweets or win.n < self.min_tweets:
                continue
            values = {"label_psi": psi(ref.labels, win.labels),
                      "confidence_js": js_distance(ref.confidence, win.confidence),
                      "low_confidence_rise": win.low_confidence / win.n - ref.low_confidence / ref.n}
            rows += [self._row(lang, measure, values[measure], win.n, ref.n) for measure in PER_LANGUAGE]
        window_n = sum(s.n for s in window.values())
        unseen = None
        if training_languages is not None and window_n >= self.min_tweets:
            unseen = sum(s.n for lang, s in window.items() if lang not in training_languages) / window_n
        rows.append(self._row(ALL_LANGUAGES, "unseen_language_share", unseen, window_n,
                              sum(s.n for s in reference.values())))
        judged = {row.key for row in rows}
        for lang, measure in sorted(self.alarms - judged):
            rows.append(self._row(lang, measure, None, window[lang].n if lang in window else 0,
                                  reference[lang].n if lang in reference else 0))

        result = DriftResult(rows)
        for row in rows:
            if row.alarm and row.key not in self.alarms:
                result.started.append(row)
                log.warning("drift alarm: %s; window %d tweets, reference %d", row.describe(), row.window_tweets,
                            row.reference_tweets)
            elif not row.alarm and row.key in self.alarms:
                result.cleared.append(row)
                log.info("drift alarm cleared: %s; window %d tweets, reference %d%s", row.describe(),
                         row.window_tweets, row.reference_tweets,
                         f" ({self.min_tweets} needed in each)" if row.value is None else "")
        self.alarms = {row.key for row in rows if row.alarm}
        return result

    def _row(self, lang: str, measure: str, value: float | None, window_n: int, reference_n: int) -> DriftRow:
        threshold = self.thresholds.of(measure)
        return DriftRow(lang, measure, value, threshold, value is not None and value > threshold, window_n,
                        reference_n)
