"""Small labeled-tweet fixtures written by the tests themselves (never copies of ../shared/datasets)."""

from __future__ import annotations

import csv
from pathlib import Path

CATEGORIES = ["pro-immigration", "anti-immigration", "neutral", "unrelated"]
TEXTS = {
    "pro-immigration": "refugees welcome here we support asylum rights",
    "anti-immigration": "close the border deport migrants now",
    "neutral": "minister said new immigration policy today",
    "unrelated": "great football match tonight team won",
}

#: The recipe of the tiny adapters: recorded in their metadata, so the trainer reuses it for candidates.
TINY_RECIPE = dict(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2, max_tokens=32)


def labeled_rows(n_per_cell: int = 4, langs=("en", "es", "in"), prefix: str = "") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{lang}-{label}-{k}", "lang": lang, "label": label, "text": f"{TEXTS[label]} {k}",
             "translation_en": "", "extra": "ignored"}
            for lang in langs for label in CATEGORIES for k in range(n_per_cell)]


def write_labeled_csv(path: Path, n_per_cell: int = 4, langs=("en", "es", "in"), rows=None) -> Path:
    rows = rows if rows is not None else labeled_rows(n_per_cell, langs)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
