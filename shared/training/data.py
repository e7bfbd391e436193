"""Labeled tweets as training examples: read from the paper's CSVs or from stored labels, split into train and
dev stratified by language and label, fingerprinted for the adapter's metadata, and weighted by class."""

from __future__ import annotations

import csv
import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.classifier.langid import normalize_lang
from shared.messages import CATEGORIES, Category, Label


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    label: Category
    text: str
    translation_en: str = ""


def read_labeled(paths: list[Path]) -> list[Example]:
    """Rows with columns id, lang, label, text (translation_en optional, extra columns ignored)."""
    examples = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "lang", "label", "text"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                try:
                    label = Category(row["label"].strip())
                except ValueError:
                    raise ValueError(f"{path}:{line}: unknown label {row['label']!r}") from None
                if row["text"].strip():
                    examples.append(Example(row["id"], normalize_lang(row["lang"]) or "und", label,
                                            row["text"], (row.get("translation_en") or "").strip()))
    if not examples:
        raise ValueError("no labeled examples found")
    return examples


def example_of(label: Label) -> Example:
    """A stored human label as a training example."""
    return Example(label.tweet_id, normalize_lang(label.lang) or "und", Category(label.label), label.text)


def stratified_split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Dev split stratified by (language, label): every stratum keeps its share, at least one example if >= 3."""
    if fraction <= 0:
        return list(examples), []
    rng = random.Random(seed)
    strata: dict[tuple[str, Category], list[Example]] = {}
    for ex in examples:
        strata.setdefault((ex.lang, ex.label), []).append(ex)
    train, dev = [], []
    for key in sorted(strata, key=lambda k: (k[0], k[1].value)):
        group = strata[key][:]
        rng.shuffle(group)
        n_dev = round(len(group) * fraction) if len(group) >= 3 else 0
        n_dev = max(n_dev, 1) if len(group) >= 3 else 0
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    return train, dev


def data_digest(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        digest.update(f"{ex.id}\t{ex.lang}\t{ex.label.value}\t{ex.text}\n".encode())
    return digest.hexdigest()[:16]


def class_weights(examples: list[Example], mode: str) -> np.ndarray:
    counts = np.array([sum(ex.label is label for ex in examples) for label in CATEGORIES], dtype=float)
    counts = np.maximum(counts, 1)
    if mode == "none":
        return np.ones(len(CATEGORIES))
    weights = (counts.sum() / counts) if mode == "balanced" else np.sqrt(counts.sum() / counts)
    return weights / weights.mean()


def balanced_sampling_weights(examples: list[Example], stance_only: bool = False) -> np.ndarray:
    """Per-example draw probabilities under which every label is equally likely within each language and each
    language keeps its share of the data: a 75-tweet language's few pro tweets are drawn as often as its anti
    ones, without drowning the large languages. ``stance_only``: only pro, anti and neutral are evened out, within
    the share of the language's tweets that are about immigration; unrelated tweets keep their own share (full
    balancing cut topic accuracy in cross-validation, docs/experiments.md cv01)."""
    per_language = Counter(ex.lang for ex in examples)
    per_stratum = Counter((ex.lang, ex.label) for ex in examples)
    evened = {(lang, label) for lang, label in per_stratum if not (stance_only and label is Category.unrelated)}
    evened_in = Counter(lang for lang, _ in evened)
    evened_share = Counter()  # per language, the share of its tweets whose labels are evened out
    for (lang, label), n in per_stratum.items():
        if (lang, label) in evened:
            evened_share[lang] += n / per_language[lang]

    def weight(ex: Example) -> float:
        n = per_stratum[(ex.lang, ex.label)]
        if (ex.lang, ex.label) not in evened:  # drawn at its natural rate
            return 1.0
        return per_language[ex.lang] * evened_share[ex.lang] / (evened_in[ex.lang] * n)

    weights = np.array([weight(ex) for ex in examples], dtype=float)
    return weights / weights.sum()
