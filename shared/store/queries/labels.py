"""Human labels and the trainer's frozen holdout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from shared.messages import Label
from shared.store.base import Store


def load_labels(store: Store) -> list[Label]:
    """The current label of every labeled tweet."""
    rows = store.query("SELECT tweet_id, text, lang, label, annotator, labeled_at FROM labels FINAL "
                       "ORDER BY tweet_id").rows
    return [Label(tweet_id=r[0], text=r[1], lang=r[2], label=r[3], annotator=r[4], labeled_at=r[5]) for r in rows]


def count_labels(store: Store, since: datetime | None = None) -> int:
    """Labeled tweets, or those whose label arrived after ``since``."""
    if since is None:
        return int(store.query("SELECT count() FROM labels FINAL").scalar() or 0)
    return int(store.query("SELECT count() FROM labels FINAL WHERE ingested_at > {since:DateTime64(3, 'UTC')}",
                           {"since": since}).scalar() or 0)


@dataclass(frozen=True)
class LabelStats:
    total: int
    new_since_active: int
    active_version: str | None
    by_language: dict[str, dict[str, int]]  # lang -> label -> count

    def as_json(self) -> dict:
        return {"total": self.total, "new_since_active": self.new_since_active,
                "active_version": self.active_version, "by_language": self.by_language}


def label_stats(store: Store, active_version: str | None, active_since: datetime | None) -> LabelStats:
    """Counts per language and label, and how many labels arrived after the active adapter was created."""
    by_language: dict[str, dict[str, int]] = {}
    for lang, label, n in store.query(
        "SELECT lang, toString(label), count() FROM labels FINAL GROUP BY lang, label ORDER BY lang, label"
    ).rows:
        by_language.setdefault(lang, {})[label] = int(n)
    total = sum(sum(v.values()) for v in by_language.values())
    new = total if active_since is None else count_labels(store, active_since)
    return LabelStats(total, new, active_version, by_language)


def holdout_ids(store: Store) -> set[str]:
    return {r[0] for r in store.query("SELECT tweet_id FROM holdout FINAL").rows}


def freeze_holdout(store: Store, tweet_ids: Iterable[str], at: datetime) -> None:
    store.insert("holdout", [(tweet_id, at) for tweet_id in tweet_ids], ("tweet_id", "created_at"))
